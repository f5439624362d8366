//! The metrics endpoint of a Vigil binary: `/metrics` (the registry in the OpenMetrics text
//! format) and `/healthz`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::HostError;

/// Renders the registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Binds the metrics address, so that a bad or busy address fails at start rather than later.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HostError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        HostError::option(
            "metrics-address",
            format!("cannot listen on {addr} for metrics: {e}"),
        )
    })
}

/// Serves `/metrics` and `/healthz` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
) -> Result<(), HostError> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        render(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app)
        .await
        .map_err(|source| HostError::Io {
            context: "metrics server".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health_and_names_a_busy_address() {
        let mut r = Registry::with_prefix("t");
        let c = Counter::<u64>::default();
        c.inc_by(3);
        r.register("things", "Things", c);
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(serve(l, Arc::new(r)));
        let m = get(addr, "/metrics").await;
        assert!(m.contains("application/openmetrics-text"), "{m}");
        assert!(m.contains("t_things_total 3"), "{m}");
        assert!(get(addr, "/healthz").await.ends_with("ok\n"));
        let e = bind(addr).await.unwrap_err().to_string();
        assert!(
            e.starts_with("--metrics-address: cannot listen on 127.0.0.1:"),
            "{e}"
        );
        task.abort();
    }
}
