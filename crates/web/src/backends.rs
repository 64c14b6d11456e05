//! The backend instances web fronts (`CONFAB_BACKEND_URL`, a comma-separated
//! list), so scaling out is a configuration change rather than a load
//! balancer the operator must bring.
//!
//! - **Health.** A task owned by `run` asks every instance's `/readyz` once a
//!   second; one that fails is taken out until it answers again. A failed
//!   connection marks an instance down at once, without waiting for the next
//!   check, so a killed instance is skipped by the very next request.
//! - **Spreading.** A socket lives long, so it goes to the live instance with
//!   the fewest relayed sockets (ties in turn); a request is short, so they go
//!   round-robin. When every instance looks down the list is tried anyway:
//!   the checks may simply be behind.
//!
//! Any instance serves any user (fan-out between them goes through Redis), so
//! there is no stickiness to keep: a browser whose socket's instance dies
//! reconnects, lands on another one and resumes.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::watch;

/// How often every instance's `/readyz` is asked.
pub(crate) const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How long one check may take before the instance counts as down. Generous:
/// a busy instance is slow, not dead (a dead one refuses at once).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

struct Instance {
    url: String,
    up: AtomicBool,
    sockets: AtomicUsize,
}

/// The pool, cheap to clone.
#[derive(Clone)]
pub(crate) struct Backends {
    instances: Arc<Vec<Instance>>,
    turn: Arc<AtomicUsize>,
}

/// One relayed socket's claim on its instance; gives the count back on drop.
pub(crate) struct SocketSlot {
    pool: Backends,
    index: usize,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.pool.instances[self.index]
            .sockets
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backends {
    /// Every instance starts as up: a web started together with its backends
    /// must not refuse the first requests before the first check.
    pub(crate) fn new(urls: &[String]) -> Self {
        Self {
            instances: Arc::new(
                urls.iter()
                    .map(|url| Instance {
                        url: url.clone(),
                        up: AtomicBool::new(true),
                        sockets: AtomicUsize::new(0),
                    })
                    .collect(),
            ),
            turn: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn url(&self, index: usize) -> &str {
        &self.instances[index].url
    }

    pub(crate) fn len(&self) -> usize {
        self.instances.len()
    }

    fn rotation(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.instances.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(move |i| (start + i) % n)
    }

    /// The order in which to try instances for a request: live ones in
    /// turn, then the rest.
    pub(crate) fn for_request(&self) -> Vec<usize> {
        let (mut up, down): (Vec<usize>, Vec<usize>) = self
            .rotation()
            .partition(|&i| self.instances[i].up.load(Ordering::Relaxed));
        up.extend(down);
        up
    }

    /// The order in which to try instances for a socket: live ones with
    /// the fewest relayed sockets first, then the rest.
    pub(crate) fn for_socket(&self) -> Vec<usize> {
        let mut order: Vec<usize> = self.rotation().collect();
        // A stable sort keeps the rotation among equals.
        order.sort_by_key(|&i| {
            let inst = &self.instances[i];
            (
                !inst.up.load(Ordering::Relaxed),
                inst.sockets.load(Ordering::Relaxed),
            )
        });
        order
    }

    /// Count a socket relayed to instance `index` for as long as the slot lives.
    pub(crate) fn claim_socket(&self, index: usize) -> SocketSlot {
        self.instances[index]
            .sockets
            .fetch_add(1, Ordering::Relaxed);
        SocketSlot {
            pool: self.clone(),
            index,
        }
    }

    /// A connection to instance `index` failed: skip it until a check says
    /// it is back.
    pub(crate) fn mark_down(&self, index: usize) {
        self.set_up(index, false);
    }

    fn set_up(&self, index: usize, up: bool) {
        let inst = &self.instances[index];
        if inst.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(backend = %inst.url, "backend instance is back");
            } else {
                tracing::warn!(backend = %inst.url, "backend instance taken out");
            }
        }
        metrics::gauge!("web_backend_up", "backend" => inst.url.clone()).set(if up {
            1.0
        } else {
            0.0
        });
    }

    /// Whether any instance is live (web's own readiness).
    pub(crate) fn any_up(&self) -> bool {
        self.instances.iter().any(|i| i.up.load(Ordering::Relaxed))
    }

    /// The live state of every instance, for `/readyz`.
    pub(crate) fn states(&self) -> Vec<(String, bool)> {
        self.instances
            .iter()
            .map(|i| (i.url.clone(), i.up.load(Ordering::Relaxed)))
            .collect()
    }

    /// Check every instance now.
    pub(crate) async fn check_all(&self, http: &reqwest::Client) {
        let checks = (0..self.len()).map(|i| async move {
            let res = http
                .get(format!("{}/readyz", self.url(i)))
                .timeout(HEALTH_TIMEOUT)
                .send()
                .await;
            let up = matches!(res, Ok(r) if r.status() == reqwest::StatusCode::OK);
            self.set_up(i, up);
        });
        futures::future::join_all(checks).await;
    }

    /// Check every instance once per [`HEALTH_INTERVAL`] until `stop` flips.
    pub(crate) async fn watch_health(self, http: reqwest::Client, mut stop: watch::Receiver<bool>) {
        loop {
            self.check_all(&http).await;
            tokio::select! {
                _ = confab_core::clock::sleep(HEALTH_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Backends {
        Backends::new(&(0..n).map(|i| format!("http://b{i}")).collect::<Vec<_>>())
    }

    #[test]
    fn requests_take_turns_and_skip_instances_that_are_down() {
        let p = pool(3);
        let firsts: Vec<usize> = (0..3).map(|_| p.for_request()[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2]);
        p.mark_down(1);
        for _ in 0..6 {
            let order = p.for_request();
            assert_ne!(order[0], 1);
            assert_eq!(order[2], 1, "a down instance is tried last: {order:?}");
        }
    }

    #[test]
    fn sockets_go_to_the_least_loaded_live_instance() {
        let p = pool(2);
        let a = p.claim_socket(p.for_socket()[0]);
        let b = p.claim_socket(p.for_socket()[0]);
        assert_ne!(a.index, b.index, "two sockets land on two instances");
        let c = p.claim_socket(p.for_socket()[0]);
        drop(a);
        // The instance that lost its socket is now the lighter one.
        let lighter = 1 - c.index;
        assert_eq!(p.for_socket()[0], lighter);
        p.mark_down(lighter);
        assert_eq!(p.for_socket(), vec![c.index, lighter]);
        assert!(p.any_up());
        p.mark_down(c.index);
        assert!(!p.any_up());
        assert_eq!(p.for_socket().len(), 2, "all down: still tried");
    }
}
