//! Response compression: tower-http's `CompressionLayer`, configured.

use http::header::CACHE_CONTROL;
use http_body::Body;
use tower_http::compression::Predicate;
use tower_http::compression::predicate::{NotForContentType, SizeAbove};

/// tower-http's compression layer with the [`CompressionPredicate`] of a
/// [`Compression`].
pub type CompressionLayer = tower_http::compression::CompressionLayer<CompressionPredicate>;

/// Response compression settings, Envoy's `compressor` filter in small:
/// reuses tower-http's [`CompressionLayer`](tower_http::compression::CompressionLayer)
/// (gzip and brotli) and decides what is worth compressing.
///
/// What tower-http does (documented reuse): it picks the encoding from the
/// request's `Accept-Encoding` honouring q-values (`br;q=0` refuses brotli,
/// `*` counts), leaves responses that already have a `content-encoding` or
/// a `content-range` alone, removes `accept-ranges` and `content-length`
/// from a compressed response, and appends `Vary: Accept-Encoding` to
/// every response it could have compressed. When the client accepts no
/// encoding at all (`identity;q=0` with nothing else acceptable) it answers
/// 406 Not Acceptable, as RFC 9110 §12.5.3 allows.
///
/// What this adds: responses are compressed only when they are at least
/// [`min_size`](Self::min_size) bytes (by `content-length` or the body's
/// exact size; unknown sizes are compressed), are not gRPC, images or
/// server-sent events, and do not say `Cache-Control: no-transform`.
///
/// ```
/// use meshgate::transform::Compression;
///
/// let layer = Compression::new().min_size(1024).brotli(false).layer();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Compression {
    gzip: bool,
    brotli: bool,
    min_size: u64,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            gzip: true,
            brotli: true,
            min_size: 1024,
        }
    }
}

impl Compression {
    /// gzip and brotli, for responses of at least 1 KiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offer gzip. Default: on.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Offer brotli (`br`). Default: on.
    pub fn brotli(mut self, on: bool) -> Self {
        self.brotli = on;
        self
    }

    /// The smallest response compressed. Default: 1 KiB (smaller ones gain
    /// little and cost CPU).
    pub fn min_size(mut self, bytes: u64) -> Self {
        self.min_size = bytes;
        self
    }

    /// The settings of a route's `transform.compression` section.
    #[cfg(feature = "config")]
    pub fn from_config(config: &crate::config::CompressionPolicy) -> Self {
        Self::new()
            .gzip(config.gzip)
            .brotli(config.brotli)
            .min_size(config.min_size.as_u64())
    }

    /// The layer: tower-http's `CompressionLayer` with these settings
    /// (deflate and zstd are not built).
    pub fn layer(&self) -> CompressionLayer {
        tower_http::compression::CompressionLayer::new()
            .gzip(self.gzip)
            .br(self.brotli)
            .compress_when(CompressionPredicate {
                min_size: SizeAbove::new(self.min_size.saturating_sub(1)),
            })
    }
}

/// Which responses a [`Compression`] compresses: see its docs.
#[derive(Debug, Clone, Copy)]
pub struct CompressionPredicate {
    min_size: SizeAbove,
}

impl Predicate for CompressionPredicate {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: Body,
    {
        let no_transform = response
            .headers()
            .get_all(CACHE_CONTROL)
            .iter()
            .any(|value| {
                value.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"))
                })
            });
        !no_transform
            && self.min_size.should_compress(response)
            && NotForContentType::GRPC.should_compress(response)
            && NotForContentType::IMAGES.should_compress(response)
            && NotForContentType::SSE.should_compress(response)
    }
}
