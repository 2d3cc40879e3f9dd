//! The orchestrator's end of one remote session's event stream: frames go to the task they
//! belong to, in order, each once, however often the connection is cut and resumed.

use super::wire::{Frame, TaskEvent, TaskFinished};
use super::{SidecarError, TaskEvents};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A frame line longer than this is garbled or hostile: the connection is dropped.
pub(super) const MAX_FRAME_BYTES: usize = 64 << 20;

struct Waiter {
    events: Arc<dyn TaskEvents>,
    done: oneshot::Sender<Result<TaskFinished, SidecarError>>,
}

pub(super) struct Relay {
    pub session: String,
    waiters: Mutex<HashMap<String, Waiter>>,
    /// The last frame handed on (the stream resumes after it).
    cursor: AtomicU64,
    /// The last frame the sidecar was told is stored.
    pub acked: AtomicU64,
    /// Stops the relay's connection loop.
    pub stop: CancellationToken,
}

impl Relay {
    pub fn new(session: String) -> Arc<Self> {
        Arc::new(Self {
            session,
            waiters: Mutex::default(),
            cursor: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            stop: CancellationToken::new(),
        })
    }

    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::SeqCst)
    }

    /// Waits for task `task`'s frames; registered before the task is sent, so none is missed.
    pub fn register(
        &self,
        task: &str,
        events: Arc<dyn TaskEvents>,
    ) -> oneshot::Receiver<Result<TaskFinished, SidecarError>> {
        let (done, finished) = oneshot::channel();
        self.lock().insert(task.to_owned(), Waiter { events, done });
        finished
    }

    pub fn forget(&self, task: &str) {
        self.lock().remove(task);
    }

    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Hands one frame on. A frame at or before the cursor was handed on before the
    /// connection broke and is skipped; one for a task nobody waits for (sent before this
    /// orchestrator restarted, its task since marked interrupted) is dropped.
    pub fn dispatch(&self, frame: Frame) {
        if frame.seq <= self.cursor() {
            return;
        }
        let mut waiters = self.lock();
        match frame.event {
            TaskEvent::Finished { finished } => {
                if let Some(waiter) = waiters.remove(&frame.task) {
                    let _ = waiter.done.send(Ok(finished));
                }
            }
            event => {
                if let Some(waiter) = waiters.get(&frame.task) {
                    waiter.events.emit(event);
                }
            }
        }
        // Moved under the waiters' lock: two dispatchers never interleave.
        self.cursor.store(frame.seq, Ordering::SeqCst);
    }

    /// A frame that does not read as one: its task fails with `error` and the stream goes on
    /// after it (else the same frame would stop the relay forever).
    pub fn skip(&self, seq: u64, task: &str, error: SidecarError) {
        if seq <= self.cursor() {
            return;
        }
        let mut waiters = self.lock();
        if let Some(waiter) = waiters.remove(task) {
            let _ = waiter.done.send(Err(error));
        }
        self.cursor.store(seq, Ordering::SeqCst);
    }

    /// Every waiting task ends with `error` (the sidecar was lost).
    pub fn fail_all(&self, error: &SidecarError) {
        for (_, waiter) in self.lock().drain() {
            let _ = waiter.done.send(Err(error.clone()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Splits a byte stream into lines, holding a partial line until its end comes.
#[derive(Default)]
pub(super) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The whole lines `chunk` completes (empty ones, the keep-alives, left out), or an error
    /// when a line grows past [`MAX_FRAME_BYTES`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, SidecarError> {
        let mut lines = Vec::new();
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            self.partial.extend_from_slice(piece);
            if self.partial.last() == Some(&b'\n') {
                let mut line = std::mem::take(&mut self.partial);
                line.pop();
                if !line.is_empty() {
                    lines.push(line);
                }
            } else if self.partial.len() > MAX_FRAME_BYTES {
                return Err(SidecarError::Protocol(format!(
                    "a frame of the event stream is over {MAX_FRAME_BYTES} bytes"
                )));
            }
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{LogLevel, ToolEvent, Usage};

    struct Collect(Mutex<Vec<String>>);
    impl TaskEvents for Collect {
        fn emit(&self, event: TaskEvent) {
            if let TaskEvent::Tool {
                event: ToolEvent::Log { message, .. },
            } = event
            {
                self.0.lock().unwrap().push(message);
            }
        }
    }

    fn log(seq: u64, message: &str) -> Frame {
        Frame {
            seq,
            task: "t_1".into(),
            event: TaskEvent::Tool {
                event: ToolEvent::Log {
                    level: LogLevel::Info,
                    message: message.into(),
                },
            },
        }
    }

    #[test]
    fn frames_replayed_after_a_reconnect_are_handed_on_once() {
        let relay = Relay::new("s_1".into());
        let seen = Arc::new(Collect(Mutex::default()));
        let mut done = relay.register("t_1", seen.clone());
        relay.dispatch(log(1, "a"));
        relay.dispatch(log(2, "b"));
        // The connection broke after frame 2 was read; the sidecar sends from 1 again.
        relay.dispatch(log(1, "a"));
        relay.dispatch(log(2, "b"));
        relay.dispatch(log(3, "c"));
        relay.dispatch(Frame {
            seq: 4,
            task: "t_1".into(),
            event: TaskEvent::Finished {
                finished: TaskFinished {
                    result: Ok("{}".into()),
                    usage: Usage::default(),
                    decision_us: vec![],
                },
            },
        });
        assert_eq!(*seen.0.lock().unwrap(), ["a", "b", "c"]);
        assert!(done.try_recv().unwrap().is_ok());
        assert_eq!(relay.waiting(), 0);
    }

    #[test]
    fn lines_are_split_across_chunks_and_oversized_ones_refused() {
        let mut lines = Lines::default();
        assert!(lines.push(b"{\"a\"").unwrap().is_empty());
        assert_eq!(
            lines.push(b":1}\n\n{}\n{").unwrap(),
            [b"{\"a\":1}".to_vec(), b"{}".to_vec()]
        );
        let mut huge = Lines::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut failed = false;
        for _ in 0..=(MAX_FRAME_BYTES >> 20) {
            if huge.push(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "an endless line is refused");
    }
}
