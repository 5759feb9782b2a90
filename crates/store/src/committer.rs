//! The group committer: one thread that turns concurrent writes into batched transactions.
//!
//! Every durable commit costs an fsync (SQLite) or a WAL flush (PostgreSQL). Writes that
//! arrive while one commit is under way queue up and go into the next transaction together,
//! so under load the cost of a commit is shared by the whole batch. Replies are sent only
//! after the batch's transaction has committed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::{Store, StoreError, Write, Written};

/// The most writes one transaction takes; the rest wait for the next.
pub const MAX_BATCH: usize = 1024;

/// Receives the outcome of a submitted write, on the committer's thread.
pub type Reply = Box<dyn FnOnce(Result<Written, StoreError>) + Send>;

struct Job {
    write: Write,
    reply: Reply,
}

/// Owns the committer thread. Dropping it finishes the queued writes, then stops the thread.
pub struct Committer {
    queue: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer thread over `store`.
    pub fn start(store: Arc<dyn Store>) -> Committer {
        let (queue, jobs) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("changegate-committer".into())
            .spawn(move || run(store.as_ref(), &jobs));
        match thread {
            Ok(handle) => Committer {
                queue: Some(queue),
                thread: Some(handle),
            },
            Err(e) => {
                // Without a thread every submit must fail; dropping the queue's only receiver
                // (it moved into the failed closure) makes each send fail and reply at once.
                tracing::error!(error = %e, "cannot start the committer thread");
                Committer {
                    queue: Some(queue),
                    thread: None,
                }
            }
        }
    }

    /// Queues a write; `reply` runs on the committer thread once the write's batch has
    /// committed (or failed). It must not block for long: the next batch waits for it.
    pub fn submit(&self, write: Write, reply: Reply) {
        let Some(queue) = &self.queue else {
            reply(Err(stopped()));
            return;
        };
        if let Err(crossbeam_channel::SendError(job)) = queue.send(Job { write, reply }) {
            (job.reply)(Err(stopped()));
        }
    }

    /// Submits a write and blocks until it has committed.
    pub fn write(&self, write: Write) -> Result<Written, StoreError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(
            write,
            Box::new(move |result| {
                // The waiter only goes away if its thread is gone; nothing to tell then.
                let _ = tx.send(result);
            }),
        );
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the queue lets the thread drain what is already queued, then return.
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the committer thread panicked");
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the committer has stopped".into())
}

fn run(store: &dyn Store, jobs: &Receiver<Job>) {
    // `recv` fails only once the queue is closed and empty: queued writes are never dropped.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<Write>, Vec<Reply>) =
            batch.into_iter().map(|j| (j.write, j.reply)).unzip();
        let n = writes.len();
        // A panic in the store must not take the thread down with it: every later write
        // would then hang. The batch's transaction was rolled back by unwinding.
        let results = catch_unwind(AssertUnwindSafe(|| store.apply(writes))).unwrap_or_else(|_| {
            tracing::error!("the store panicked while committing a batch");
            vec![
                Err(StoreError::Backend(
                    "the store failed while committing".into()
                ));
                n
            ]
        });
        let results = if results.len() == n {
            results
        } else {
            tracing::error!(
                expected = n,
                got = results.len(),
                "the store answered a batch wrongly"
            );
            vec![
                Err(StoreError::Backend(
                    "the store answered a batch wrongly".into()
                ));
                n
            ]
        };
        tracing::debug!(writes = n, "committed a batch");
        for (reply, result) in replies.into_iter().zip(results) {
            if catch_unwind(AssertUnwindSafe(|| reply(result))).is_err() {
                tracing::error!("a commit reply panicked");
            }
        }
    }
}
