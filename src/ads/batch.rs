//! Credits that arrive together are written together: one transaction of a fixed number of
//! statements for a whole batch, instead of one transaction per credit. At a few hundred
//! callbacks a second per instance the database's per-statement and per-commit costs, not
//! the work, decide the rate; batching removes most of them.
//!
//! A credit joins a queue. Up to two tasks per instance drain it: while the batches in hand
//! are written, the credits that arrive wait and form the next ones, so an idle server
//! writes each credit at once (a batch of one is the plain credit transaction) and a busy
//! one writes as many together as arrived. No two credits being written by one instance
//! share a cap scope (user, device or address), in one batch or in two: each counter row is
//! raised once per statement, each user's account row is updated once, two batches never
//! wait on each other's rows, and every cap is decided exactly as for credits one at a time.
//!
//! The batch transaction takes the fast path only: it claims the nonces (a nonce already
//! claimed answers DUPLICATE, as alone), raises the counters, checks the cooldown, pays
//! every user in one wallet payout and writes the reward rows. When anything else happens
//! (a cap is full, a cooldown runs, an event id was credited under another nonce, a user
//! has no account row yet, a database error), the batch is rolled back whole and each of
//! its credits is written alone, where the refusal is named as it always was. The batch
//! is an optimisation of what the single credit does, never a second set of rules.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr,
    sea_query::{Expr, ExprTrait, Query},
};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    entity::{ad_nonce, ad_reward},
    service::{self, CreditJob, Credited},
};
use crate::{app::AppState, graphql::ApiError, wallet::service as wallet};

/// Most credits written in one transaction.
pub const MAX_BATCH: usize = 64;

pub type Answer = Result<Credited, ApiError>;

struct Waiting {
    job: CreditJob,
    /// The job's cap scopes, named once: the queue compares them under its lock.
    scopes: Vec<String>,
    reply: oneshot::Sender<Answer>,
}

impl Waiting {
    fn new(job: CreditJob) -> (Self, oneshot::Receiver<Answer>) {
        let (reply, answer) = oneshot::channel();
        let scopes = job.scope_names();
        (Self { job, scopes, reply }, answer)
    }
}

/// Batches an instance writes at the same time: while one commits, the next is sent.
pub const DRAINS: usize = 2;

/// The credits waiting for a batch, per instance.
#[derive(Default)]
pub struct CreditQueue {
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Tasks draining the queue, at most [`DRAINS`].
    drains: usize,
    /// The cap scopes of the credits being written: a credit sharing one waits.
    busy: HashSet<String>,
}

impl CreditQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frees the scopes of a batch written (`done`) and takes the next: waiting credits in
    /// arrival order, leaving for later any that shares a cap scope with one taken or being
    /// written. `None`, and this drain ends, when nothing can be taken; what still waits
    /// then waits on scopes another drain holds, and that drain takes it once they are
    /// free.
    fn next_batch(&self, done: &[String]) -> Option<(Vec<Waiting>, Vec<String>)> {
        let mut queue = self.lock();
        let Queue {
            waiting,
            drains,
            busy,
        } = &mut *queue;
        for scope in done {
            busy.remove(scope);
        }
        let mut taken = Vec::new();
        let mut scopes = Vec::new();
        let mut later = VecDeque::new();
        for w in waiting.drain(..) {
            if taken.len() == MAX_BATCH || w.scopes.iter().any(|s| busy.contains(s)) {
                later.push_back(w);
                continue;
            }
            busy.extend(w.scopes.iter().cloned());
            scopes.extend(w.scopes.iter().cloned());
            taken.push(w);
        }
        *waiting = later;
        if taken.is_empty() {
            *drains -= 1;
            return None;
        }
        Some((taken, scopes))
    }
}

/// One drain's hold on the queue. After a panic it frees the scopes it held, and when no
/// drain is left the waiting credits are answered with an error (their senders dropped);
/// the next credit starts a new drain.
struct Drain {
    state: AppState,
    holding: Vec<String>,
}

impl Drop for Drain {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.state.ads.credits.lock();
            for scope in &self.holding {
                queue.busy.remove(scope);
            }
            queue.drains -= 1;
            if queue.drains == 0 {
                queue.waiting.clear();
            }
        }
    }
}

/// Queues `job` and waits for its batch's answer.
pub async fn submit(state: &AppState, job: CreditJob) -> Answer {
    let (waiting, answer) = Waiting::new(job);
    let start = {
        let mut queue = state.ads.credits.lock();
        queue.waiting.push_back(waiting);
        let start = queue.drains < DRAINS;
        if start {
            queue.drains += 1;
        }
        start
    };
    if start {
        let mut drain = Drain {
            state: state.clone(),
            holding: Vec::new(),
        };
        tokio::spawn(async move {
            while let Some((batch, scopes)) = drain.state.ads.credits.next_batch(&drain.holding) {
                drain.holding = scopes;
                write(&drain.state, batch).await;
            }
            drain.holding.clear();
        });
    }
    answer.await.unwrap_or_else(|_| Err(interrupted()))
}

fn interrupted() -> ApiError {
    ApiError::internal("the credit was interrupted; retry")
}

/// Writes these credits as one batch, as the queue's drain writes the batches it forms, and
/// answers each in order. It bypasses the queue (and so the scopes its drains hold): for
/// tests and tools on an instance that is not crediting otherwise.
///
/// # Panics
///
/// When two of the credits share a cap scope: the queue never batches those.
#[doc(hidden)]
pub async fn write_batch(state: &AppState, jobs: Vec<CreditJob>) -> Vec<Answer> {
    let (batch, answers): (Vec<_>, Vec<_>) = jobs.into_iter().map(Waiting::new).unzip();
    let mut seen = HashSet::new();
    let disjoint = batch.iter().flat_map(|w| &w.scopes).all(|s| seen.insert(s));
    assert!(disjoint, "credits written together must share no cap scope");
    write(state, batch).await;
    let mut out = Vec::with_capacity(answers.len());
    for answer in answers {
        out.push(answer.await.unwrap_or_else(|_| Err(interrupted())));
    }
    out
}

/// Hands a credit its answer, once what follows a written credit is done (the wallet
/// notification, the kv cooldown, the metric): here rather than in the caller, which may
/// have gone away (a callback whose connection dropped while it waited).
async fn answer_to(state: &AppState, waiting: Waiting, answer: Answer) {
    if let Ok(Some((reward, _))) = &answer {
        service::after_credit(state, reward).await;
    }
    let _ = waiting.reply.send(answer);
}

async fn write(state: &AppState, mut batch: Vec<Waiting>) {
    if batch.len() == 1
        && let Some(only) = batch.pop()
    {
        let answer = service::credit_alone(state, &only.job).await;
        state.metrics.record_ads_credit_batch("single", 1);
        answer_to(state, only, answer).await;
        return;
    }
    let jobs: Vec<&CreditJob> = batch.iter().map(|w| &w.job).collect();
    match together(state, &jobs).await {
        Ok(Some(answers)) => {
            state
                .metrics
                .record_ads_credit_batch("batched", batch.len() as u64);
            futures_util::future::join_all(
                batch
                    .into_iter()
                    .zip(answers)
                    .map(|(w, answer)| answer_to(state, w, Ok(answer))),
            )
            .await;
        }
        outcome => {
            if let Err(e) = outcome {
                tracing::debug!(error = %e, credits = batch.len(), "ad credit batch failed; crediting one by one");
            }
            state
                .metrics
                .record_ads_credit_batch("fallback", batch.len() as u64);
            // The credits share no scope, so they do not wait on each other alone either.
            futures_util::future::join_all(batch.into_iter().map(|w| async move {
                let answer = service::credit_alone(state, &w.job).await;
                answer_to(state, w, answer).await;
            }))
            .await;
        }
    }
}

/// The batch in one transaction: each credit's answer, or `None` when the batch must be
/// written one by one (rolled back, nothing changed).
async fn together(state: &AppState, jobs: &[&CreditJob]) -> Result<Option<Vec<Credited>>, DbErr> {
    let txn = state.db.begin_write().await?;
    match together_in(state, &txn, jobs).await {
        Ok(Some(answers)) => {
            txn.commit().await?;
            Ok(Some(answers))
        }
        Ok(None) => {
            txn.rollback().await?;
            Ok(None)
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

async fn together_in(
    state: &AppState,
    txn: &DatabaseTransaction,
    jobs: &[&CreditJob],
) -> Result<Option<Vec<Credited>>, DbErr> {
    let now = state.ads.clock.now();
    let claimed = claim(txn, jobs, now).await?;
    let live: Vec<&CreditJob> = jobs
        .iter()
        .copied()
        .filter(|j| claimed.contains(&j.grant.nonce))
        .collect();
    if live.is_empty() {
        return Ok(Some(vec![None; jobs.len()]));
    }
    let users: Vec<Uuid> = live.iter().map(|j| j.grant.user_id).collect();
    let interval = chrono::Duration::seconds(i64::from(state.config.ads.min_interval));
    if !interval.is_zero() && !wallet::lock_users(txn, &users).await? {
        return Ok(None);
    }
    let scopes: Vec<_> = live.iter().map(|j| (j.scopes(), j.caps)).collect();
    let wanted: Vec<(usize, &str, u32)> = scopes
        .iter()
        .flat_map(|(s, caps)| s.with_caps(*caps))
        .collect();
    if wanted.iter().any(|(_, _, cap)| *cap == 0) {
        return Ok(None);
    }
    let raised = service::raise_counts(txn, &service::day_of(now), &wanted).await?;
    if raised.len() != wanted.len() {
        return Ok(None);
    }
    if !interval.is_zero() {
        let devices: Vec<&str> = live.iter().map(|j| j.grant.device_hash.as_str()).collect();
        if service::latest_reward(txn, now - interval, &users, &devices)
            .await?
            .is_some()
        {
            return Ok(None);
        }
    }
    let ids: Vec<Uuid> = live.iter().map(|_| Uuid::now_v7()).collect();
    let transfers: Vec<_> = live
        .iter()
        .zip(&ids)
        .map(|(j, id)| j.transfer(*id))
        .collect();
    let paid = match wallet::pay_out_in(txn, &transfers).await {
        Ok(Some(paid)) => paid,
        Ok(None) => return Ok(None),
        Err(wallet::WalletError::Db(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "ad credit batch refused by the wallet");
            return Ok(None);
        }
    };
    let rewards: Vec<_> = live
        .iter()
        .zip(&ids)
        .zip(&paid)
        .map(|((j, id), moved)| j.reward(*id, moved.transfer.id, now))
        .collect();
    if service::insert_rewards(txn, rewards.clone()).await? != rewards.len() as u64 {
        // An event id credited before (or twice in this batch): alone, it answers DUPLICATE.
        return Ok(None);
    }
    let mut credited: HashMap<String, (ad_reward::Model, i64)> = rewards
        .into_iter()
        .zip(paid)
        .map(|(reward, moved)| {
            let balance = moved.transfer.credit_balance_after;
            (reward.nonce.clone(), (reward, balance))
        })
        .collect();
    Ok(Some(
        jobs.iter()
            .map(|j| credited.remove(&j.grant.nonce))
            .collect(),
    ))
}

/// Marks the nonces credited, each only if it was not; the nonces this transaction claimed.
async fn claim(
    txn: &DatabaseTransaction,
    jobs: &[&CreditJob],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HashSet<String>, DbErr> {
    use ad_nonce::Column as C;
    let mut update = Query::update();
    update
        .table(ad_nonce::Entity)
        .value(C::CreditedAt, now)
        .and_where(Expr::col(C::Nonce).is_in(jobs.iter().map(|j| j.grant.nonce.clone())))
        .and_where(C::CreditedAt.is_null())
        .returning(Query::returning().column(C::Nonce));
    txn.query_all(&update)
        .await?
        .into_iter()
        .map(|row| row.try_get::<String>("", "nonce"))
        .collect()
}
