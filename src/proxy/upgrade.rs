//! `Upgrade` (WebSocket) pass-through: after a `101 Switching Protocols`
//! the client's and the upstream's connections are joined byte for byte.

use http::header::{self, HeaderMap};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::headers::has_token;

/// Whether a request asks to switch protocols: HTTP/1.1 with
/// `Connection: upgrade` and an `Upgrade` header.
pub(crate) fn is_upgrade_request(version: http::Version, headers: &HeaderMap) -> bool {
    version == http::Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && has_token(headers, &header::CONNECTION, "upgrade")
}

/// Copies bytes both ways between the client's and the upstream's upgraded
/// connections, on a task of its own, until either side closes.
///
/// The client side resolves once the server has written the 101 response
/// it is given, so this must run apart from the response future.
pub(crate) fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        // The upstream side is ready as soon as its 101 arrived; the client
        // side once the server has written it.
        let both = match upstream.await {
            Ok(upstream) => client.await.map(|client| (client, upstream)),
            Err(error) => Err(error),
        };
        let (client, upstream) = match both {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "proxy: upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((sent, received)) => {
                tracing::debug!(sent, received, "proxy: upgraded connection closed");
            }
            Err(error) => tracing::debug!(%error, "proxy: upgraded connection failed"),
        }
    });
}
