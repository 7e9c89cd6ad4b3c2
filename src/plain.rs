//! The plain-HTTP endpoints served on the WebSocket port: `GET /healthz` and the Prometheus
//! scrape at `--metrics-path` (default `/metrics`).
//!
//! Owns the choice of endpoint and the response body: `ok` for health, this process's counters
//! (summed over its reactors) for metrics. The response is staged in `Shared::out` like any other
//! output. It does not parse requests (see `handshake`) or decide what happens to the connection
//! afterwards (see `conn`: the write side is shut once the response is out). Never on the
//! per-message path.

use crate::handshake;
use crate::shared::Shared;

/// Health check path (always served when metrics are on).
pub const HEALTH_PATH: &str = "/healthz";

/// A served endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: `ok`.
    Health,
    /// `GET <--metrics-path>`: Prometheus text.
    Metrics,
}

/// Which endpoint a plain `GET` of `path` reaches, if any (none when metrics are off).
pub fn route(sh: &Shared, path: &str) -> Option<Endpoint> {
    let metrics_path = sh.metrics_path.as_deref()?;
    if path == HEALTH_PATH {
        Some(Endpoint::Health)
    } else if path == metrics_path {
        Some(Endpoint::Metrics)
    } else {
        None
    }
}

/// Stages a `200` response for `ep` in `sh.out`; `false` when the metrics could not be rendered
/// (nothing is staged then).
pub fn serve(sh: &mut Shared, ep: Endpoint) -> bool {
    let (body, ctype): (&[u8], &str) = match ep {
        Endpoint::Health => (b"ok\n", "text/plain; charset=utf-8"),
        Endpoint::Metrics => {
            sh.body.clear();
            let total = match &sh.board {
                Some((b, i)) => b.total_with(*i, &sh.metrics),
                None => sh.metrics.clone(),
            };
            if total.render_labeled(&mut sh.body, sh.process_label.as_deref()).is_err() {
                return false;
            }
            (&sh.body, "text/plain; version=0.0.4; charset=utf-8")
        }
    };
    let start = sh.out.len();
    sh.out.resize(start + body.len() + 256, 0);
    let n = handshake::write_response(200, "", body, ctype, &mut sh.out[start..]);
    sh.out.truncate(start + n);
    true
}
