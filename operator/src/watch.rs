//! Driving a kube-runtime watch stream: what the Pod and Node watchers share.

use std::future::Future;
use std::pin::pin;

use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use prometheus_client::metrics::counter::Counter;

use crate::kube_metrics::KubeMetrics;

/// Feeds every event of `events` to `handle` until `stop` completes. Errors are logged and
/// counted in `errors` (a refused permission as such, see [`crate::forbidden`]); the stream's
/// backoff retries them, so this never gives up on its own. `what` names the watch in log lines.
pub async fn drive<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    stop: impl Future<Output = ()>,
    what: &str,
    errors: &Counter,
    metrics: &KubeMetrics,
    mut handle: impl FnMut(watcher::Event<K>),
) {
    let mut events = pin!(events);
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            event = events.next() => match event {
                Some(Ok(event)) => handle(event),
                Some(Err(e)) => {
                    errors.inc();
                    if !crate::forbidden::report(&e, &format!("watching {what}s"), metrics) {
                        tracing::warn!(error = %e, "{what} watch failed; retrying with backoff");
                    }
                }
                None => {
                    // A default backoff never gives up, so the stream does not end; should it,
                    // what is known stays as it is until the operator stops.
                    tracing::error!("{what} watch ended; no longer updated");
                    stop.await;
                    break;
                }
            },
        }
    }
    tracing::debug!("{what} watcher stopped");
}
