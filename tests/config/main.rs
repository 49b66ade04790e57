//! Loading and validating the gateway config through `meshgate::config`.

use meshgate::config::Config;

#[test]
fn probe() {
    for yaml in [
        "routes: [{ name: a, upstream: pay }]",
        "routes:\n  - name: a\n    upstream: x\n    timeout: 30\n",
        "routes:\n  - name: a\n    match:\n      hedaers: []\n",
        "upstreams:\n  - name: u\n    endpoints: [a:1]\n    outlier_detection: { max_ejection_percent: 150 }\n",
        "listeners: [\n",
        "a: b\n",
        "upstreams:\n  - name: u\n    endpoints: [{address: 'a:1', wieght: 2}]\n",
        "upstreams:\n  - name: u\n    endpoints: [a:1]\n    balancing: { consistent_hash: { hedaer: x } }\n",
    ] {
        println!("---\n{}", Config::from_yaml_str(yaml).unwrap_err());
    }
}
