//! The `Deployer` actor: runs jobs handed over by the [`crate::job_consumer::JobConsumer`].
//!
//! Each job runs in its own tokio task, tracked by the node's shutdown tracker (so a panic there
//! becomes a failed deployment instead of killing the actor). Jobs of one app run one after another behind a per-app async mutex; jobs of
//! different apps run concurrently. Deploy jobs are claimed in Redis first, so a redelivered job
//! never runs twice. The count of jobs in progress is published for the heartbeat and for a
//! bounded shutdown. All of that lives in [`Jobs`], which outlives the actor: a deployer
//! restarted by the node's supervision tree takes the running jobs over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use berth_protocol::Job;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::pipeline::{self, Claim, Services};

/// What outlives any one `Deployer` actor: the jobs running, their locks and counts. The node
/// makes it once; a `Deployer` restarted by its supervisor takes it over, so jobs go on, an
/// app's jobs stay serialized, and a job delivered again while it runs (its consumer or its
/// deployer restarted) waits for the run in progress instead of starting a second one.
#[derive(Default)]
pub struct Jobs {
    /// One async mutex per app name: serializes the jobs of an app.
    app_locks: pipeline::retire::AppLocks,
    /// Abort handles of the job tasks, by task number, so shutdown can stop stragglers.
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    next_task: AtomicU64,
    /// Deploy jobs running, by claim id (`pipeline::claim_id`): what each will answer.
    running_jobs: Mutex<HashMap<String, watch::Receiver<Option<bool>>>>,
    /// When each running replica was first seen out of its app's route (`pipeline::retire`).
    out_since: pipeline::retire::OutSince,
    /// Set while a retire pass runs, so passes never pile up.
    retiring: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Jobs {
    fn app_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = lock(&self.app_locks);
        // Forget locks nobody holds or waits for, so the map does not grow forever.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(app.to_string()).or_default().clone()
    }
}

/// The job-running actor.
pub struct Deployer {
    svc: Arc<Services>,
    jobs: Arc<Jobs>,
    /// Jobs in progress (sender side; the heartbeat holds a receiver).
    running: Arc<watch::Sender<u32>>,
}

/// How often replicas no route names any more are looked for.
const RETIRE_EVERY: Duration = Duration::from_secs(2);

impl Deployer {
    pub fn new(svc: Arc<Services>, jobs: Arc<Jobs>, running: Arc<watch::Sender<u32>>) -> Self {
        Deployer { svc, jobs, running }
    }
}

impl Actor for Deployer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RETIRE_EVERY, |act, _| {
            if act.jobs.retiring.swap(true, Ordering::SeqCst) {
                return;
            }
            let (svc, jobs) = (act.svc.clone(), act.jobs.clone());
            act.svc.shutdown.spawn(async move {
                if let Err(e) = pipeline::retire::pass(&svc, &jobs.app_locks, &jobs.out_since).await
                {
                    tracing::warn!(error = %e, "retire pass failed");
                }
                jobs.retiring.store(false, Ordering::SeqCst);
            });
        });
    }
}

berth_bus::injectable!(Deployer);

/// Run one job; resolves to whether the stream entry may be acknowledged.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RunJob {
    pub job: Job,
    /// The entry came from this node's pending list at start-up (it was delivered before a
    /// restart).
    pub recovered: bool,
}

/// Resolves to the answer a job in progress gives when it ends (`false` if it never does).
async fn answer(mut rx: watch::Receiver<Option<bool>>) -> bool {
    match rx.wait_for(|a| a.is_some()).await {
        Ok(a) => a.unwrap_or(false),
        Err(_) => false,
    }
}

impl Handler<RunJob> for Deployer {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: RunJob, _: &mut Self::Context) -> Self::Result {
        // A command in a running replica: not behind the app's lock (a deploy may hold it for
        // minutes), not counted as a job in progress, and acknowledged at once — its claim keeps
        // a redelivery from running it twice. A tracked task; it ends when the node shuts down.
        let msg = match msg.job {
            Job::Exec(job) => {
                self.svc
                    .shutdown
                    .spawn(crate::exec::run(self.svc.clone(), *job));
                return Box::pin(async { true });
            }
            job => RunJob { job, ..msg },
        };
        let app = match &msg.job {
            Job::Deploy(d) => d.app.name.clone(),
            Job::RemoveApp { app, .. } | Job::StopApp { app } => app.clone(),
            Job::Exec(job) => job.app.clone(),
        };
        let deployment = match &msg.job {
            Job::Deploy(d) => Some(d.as_ref().clone()),
            Job::RemoveApp { .. } | Job::StopApp { .. } | Job::Exec(_) => None,
        };
        let key = match &msg.job {
            Job::Deploy(d) => Some(pipeline::claim_id(d)),
            _ => None,
        };
        let (tx, rx) = watch::channel(None);
        if let Some(k) = &key {
            let mut running = lock(&self.jobs.running_jobs);
            if let Some(rx) = running.get(k) {
                tracing::info!(job = %k, "job delivered again while it runs; waiting for that run");
                return Box::pin(answer(rx.clone()));
            }
            running.insert(k.clone(), rx.clone());
        }
        let lock_of_app = self.jobs.app_lock(&app);
        let svc = self.svc.clone();
        self.running.send_modify(|n| *n += 1);
        let task = self.svc.shutdown.spawn({
            let svc = svc.clone();
            async move {
                let _serial = lock_of_app.lock().await;
                run_job(&svc, msg.job, msg.recovered).await
            }
        });
        let n = self.jobs.next_task.fetch_add(1, Ordering::SeqCst);
        lock(&self.jobs.tasks).insert(n, task.abort_handle());
        // The bookkeeping of the job's end is a task too, not a future of this actor: a
        // deployer that dies meanwhile loses nothing of it.
        let (jobs, running) = (self.jobs.clone(), self.running.clone());
        self.svc.shutdown.spawn(async move {
            let result = task.await;
            lock(&jobs.tasks).remove(&n);
            running.send_modify(|n| *n = n.saturating_sub(1));
            let ack = match result {
                Ok(ack) => ack,
                Err(e) if e.is_panic() => {
                    tracing::error!(%app, "job task panicked");
                    // Not the app's fault: the coordinator runs it again (a crash that repeats
                    // fails it after the last attempt).
                    if let Some(job) = deployment {
                        pipeline::interrupted(
                            &svc,
                            &job,
                            "internal error: the node's deploy task crashed".into(),
                        )
                        .await;
                    }
                    true
                }
                // Aborted by shutdown: leave the entry pending; after a restart it is reported
                // as interrupted.
                Err(_) => false,
            };
            if let Some(k) = key {
                lock(&jobs.running_jobs).remove(&k);
            }
            let _ = tx.send(Some(ack));
        });
        Box::pin(answer(rx))
    }
}

async fn run_job(svc: &Arc<Services>, job: Job, recovered: bool) -> bool {
    match job {
        Job::Deploy(d) if pipeline::superseded(svc, &d).await => {
            tracing::info!(deployment = %d.deployment_id, attempt = d.attempt, "job of an earlier attempt (the deployment moved to another node); skipping");
            true
        }
        Job::Deploy(d) => match pipeline::claim(svc, &pipeline::claim_id(&d)).await {
            Ok(Claim::Taken) => {
                tracing::info!(deployment = %d.deployment_id, app = %d.app.name, "deploying");
                pipeline::deploy(svc, &d).await;
                true
            }
            Ok(Claim::Ours) if recovered => {
                tracing::warn!(deployment = %d.deployment_id, attempt = d.attempt, "job was interrupted by a restart");
                pipeline::resume(svc, &d).await;
                true
            }
            Ok(Claim::Ours) | Ok(Claim::Other(_)) => {
                tracing::info!(deployment = %d.deployment_id, "job already claimed; skipping");
                true
            }
            Err(e) => {
                // Not started and not acknowledged: the entry stays pending and is retried (when
                // Redis is back, the job consumer re-reads its pending entries first).
                if e.is_redis_away() {
                    tracing::debug!(deployment = %d.deployment_id, error = %e, "cannot claim job yet");
                } else {
                    tracing::error!(deployment = %d.deployment_id, error = %e, "cannot claim job");
                }
                false
            }
        },
        Job::StopApp { app } => {
            tracing::info!(%app, "stopping app");
            if let Err(e) = pipeline::stop_app(svc, &app).await {
                tracing::error!(%app, error = %e, "stopping app failed");
            }
            true
        }
        Job::RemoveApp { app, domains } => {
            tracing::info!(%app, "removing app");
            if let Err(e) = pipeline::remove_app(svc, &app, &domains).await {
                tracing::error!(%app, error = %e, "removing app failed");
            }
            true
        }
        // `Handler<RunJob>` runs these itself; this arm only keeps the match whole.
        Job::Exec(job) => {
            crate::exec::run(svc.clone(), *job).await;
            true
        }
    }
}

/// Wait up to `timeout` for jobs in progress, then abort the rest and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain(pub Duration);

impl Handler<Drain> for Deployer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Drain, _: &mut Self::Context) -> Self::Result {
        let mut rx = self.running.subscribe();
        let jobs = self.jobs.clone();
        Box::pin(
            async move {
                if tokio::time::timeout(msg.0, rx.wait_for(|n| *n == 0))
                    .await
                    .is_err()
                {
                    let handles: Vec<AbortHandle> =
                        lock(&jobs.tasks).drain().map(|(_, h)| h).collect();
                    tracing::warn!(
                        jobs = handles.len(),
                        "aborting jobs still running at shutdown"
                    );
                    for h in handles {
                        h.abort();
                    }
                }
            }
            .into_actor(self)
            .map(|_, _, ctx: &mut Context<Self>| ctx.stop()),
        )
    }
}
