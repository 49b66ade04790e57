-- wrk script for ./scripts/build-pgo: the training traffic of a
-- profile-guided build, against the demo gateway (its default config).
-- It takes turns over the demo's routes, so that the profile sees what a
-- gateway does, not one request: round-robin and canary routing, API-key
-- auth (accepted and refused), the response cache, retries, unmatched
-- routes (404 problem+json), query strings and request bodies.
local key = "demo-key-7f3a9c"
local requests = {
    { "GET", "/users/7", {} },
    { "GET", "/users/8?expand=orders", { ["Accept"] = "application/json" } },
    { "GET", "/users/9", { ["x-canary"] = "true" } },
    { "POST", "/users", { ["Content-Type"] = "application/json" }, '{"name":"ada","tier":"pro"}' },
    { "GET", "/orders/1", { ["X-API-Key"] = key } },
    { "GET", "/orders/2", { ["X-API-Key"] = "wrong" } },
    { "GET", "/catalog/shoes", {} },
    { "GET", "/catalog/hats", { ["Cache-Control"] = "no-cache" } },
    { "GET", "/flaky", {} },
    { "GET", "/nowhere", {} },
}
local i = 0

request = function()
    i = i + 1
    local r = requests[(i % #requests) + 1]
    return wrk.format(r[1], r[2], r[3], r[4])
end
