//! The `Deployer` actor: runs jobs handed over by the [`crate::job_consumer::JobConsumer`].
//!
//! Each job runs in its own tokio task, tracked by the node's shutdown tracker (so a panic there
//! becomes a failed deployment instead of killing the actor). Jobs of one app run one after another behind a per-app async mutex; jobs of
//! different apps run concurrently. Deploy jobs are claimed in Redis first, so a redelivered job
//! never runs twice. The count of jobs in progress is published for the heartbeat and for a
//! bounded shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use berth_protocol::Job;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::pipeline::{self, Claim, Services};

/// The job-running actor.
pub struct Deployer {
    svc: Arc<Services>,
    /// One async mutex per app name: serializes the jobs of an app.
    app_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Jobs in progress (sender side; the heartbeat holds a receiver).
    running: Arc<watch::Sender<u32>>,
    /// Abort handles of the job tasks, by task number, so shutdown can stop stragglers.
    tasks: Arc<Mutex<HashMap<u64, AbortHandle>>>,
    next_task: u64,
    /// When each running replica was first seen out of its app's route (`pipeline::retire`).
    out_since: pipeline::retire::OutSince,
    /// Set while a retire pass runs, so passes never pile up.
    retiring: Arc<std::sync::atomic::AtomicBool>,
}

/// How often replicas no route names any more are looked for.
const RETIRE_EVERY: Duration = Duration::from_secs(2);

impl Deployer {
    pub fn new(svc: Arc<Services>, running: watch::Sender<u32>) -> Self {
        Deployer {
            svc,
            app_locks: Arc::default(),
            running: Arc::new(running),
            tasks: Arc::default(),
            next_task: 0,
            out_since: Arc::default(),
            retiring: Arc::default(),
        }
    }

    fn app_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.app_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds or waits for, so the map does not grow forever.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(app.to_string()).or_default().clone()
    }
}

impl Actor for Deployer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RETIRE_EVERY, |act, _| {
            use std::sync::atomic::Ordering;
            if act.retiring.swap(true, Ordering::SeqCst) {
                return;
            }
            let (svc, locks) = (act.svc.clone(), act.app_locks.clone());
            let (out_since, flag) = (act.out_since.clone(), act.retiring.clone());
            act.svc.shutdown.spawn(async move {
                if let Err(e) = pipeline::retire::pass(&svc, &locks, &out_since).await {
                    tracing::warn!(error = %e, "retire pass failed");
                }
                flag.store(false, Ordering::SeqCst);
            });
        });
    }
}

/// Run one job; resolves to whether the stream entry may be acknowledged.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RunJob {
    pub job: Job,
    /// The entry came from this node's pending list at start-up (it was delivered before a
    /// restart).
    pub recovered: bool,
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
        let lock = self.app_lock(&app);
        let svc = self.svc.clone();
        self.running.send_modify(|n| *n += 1);
        let task = self.svc.shutdown.spawn({
            let svc = svc.clone();
            async move {
                let _serial = lock.lock().await;
                run_job(&svc, msg.job, msg.recovered).await
            }
        });
        let n = self.next_task;
        self.next_task += 1;
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n, task.abort_handle());
        let tasks = self.tasks.clone();
        let running = self.running.clone();
        Box::pin(async move {
            let result = task.await;
            tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
            running.send_modify(|n| *n = n.saturating_sub(1));
            match result {
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
            }
        })
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
                // Not started and not acknowledged: the entry stays pending and is retried.
                tracing::error!(deployment = %d.deployment_id, error = %e, "cannot claim job");
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
        let tasks = self.tasks.clone();
        Box::pin(
            async move {
                if tokio::time::timeout(msg.0, rx.wait_for(|n| *n == 0))
                    .await
                    .is_err()
                {
                    let handles: Vec<AbortHandle> = tasks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .drain()
                        .map(|(_, h)| h)
                        .collect();
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
