//! The lease of a scheduler on a database several schedulers share.
//!
//! A scheduler registered with a lease of `L` ([`Claim::Leased`]) renews it every `L / 4`. The
//! lease runs in the database's time: a renewal at the database's instant `t` holds it until
//! `t + L`, and another scheduler takes the tries over only once the database's clock is past
//! that. This process only measures how long ago it *sent* its last successful renewal, on its
//! monotonic clock: the database received it later, so the lease lasts at least `L` from the
//! send. Once `3 L / 4` have passed since that send without a newer success, or the database
//! answers that the lease is gone, the keeper reports it lost and the engine cuts its tries
//! off: it stops before the lease can run out, so two schedulers never run one try's work at
//! once. Should the engine not have stopped an eighth of the lease later (stuck on a database
//! that does not answer), the keeper kills the tries' process groups and ends the process.
//! The local clock's time of day decides nothing.

use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Claim, Store};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, warn};

/// Starts renewing `claim`'s lease in the background; the receiver says why once it is lost
/// (for [`crate::engine::Engine::fenced_by`]). `None` for an exclusive claim, which has no
/// lease. The keeper stops when every receiver is gone.
pub fn keep(store: Arc<dyn Store>, claim: Claim) -> Option<watch::Receiver<Option<String>>> {
    let Claim::Leased { lease, .. } = claim else { return None };
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let every = lease / 4;
        let give_up = lease * 3 / 4;
        let mut last_ok = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tx.closed() => return,
            }
            let sent = Instant::now();
            // A renewal that hangs is abandoned in time: stopping must not wait for it.
            let answer = tokio::time::timeout_at(last_ok + give_up, store.renew_lease()).await;
            let why = match answer {
                Ok(Ok(true)) => {
                    last_ok = sent;
                    continue;
                }
                Ok(Ok(false)) => {
                    Some("the scheduler's lease ran out and other schedulers may hold its tries".to_string())
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot renew the scheduler's lease");
                    None
                }
                Err(_) => None,
            };
            let why = why.or_else(|| {
                (Instant::now() >= last_ok + give_up).then(|| {
                    format!(
                        "the scheduler's lease could not be renewed for {} (of a lease of {})",
                        humantime::format_duration(Duration::from_secs(give_up.as_secs())),
                        humantime::format_duration(lease)
                    )
                })
            });
            if let Some(why) = why {
                let _ = tx.send(Some(why.clone()));
                // The engine stops at once when its loop is free; should it be stuck (a call
                // to a database that no longer answers), the process stops its work itself,
                // still before the lease can run out.
                tokio::time::sleep(lease / 8).await;
                let killed = crate::operators::kill_own_tries();
                error!(killed, "{why}: the engine did not stop in time; the process exits");
                std::process::exit(1);
            }
        }
    });
    Some(rx)
}
