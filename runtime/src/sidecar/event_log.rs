//! A sidecar's events of one session, kept until its orchestrator says it has stored them,
//! so a relay connection that breaks resumes where it stopped: nothing missed, nothing twice.

use super::wire::{Frame, TaskEvent};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// One session's frames, each kept as its JSON line (serialized once).
#[derive(Default)]
pub struct EventLog {
    state: Mutex<State>,
    /// Woken on every new frame and when the session closes.
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// The seq of the last frame pushed.
    last: u64,
    /// Frames after the last acknowledged one, oldest first.
    kept: VecDeque<(u64, Bytes)>,
    closed: bool,
}

impl EventLog {
    pub fn push(&self, task: &str, event: TaskEvent) {
        let mut state = self.lock();
        state.last += 1;
        let frame = Frame {
            seq: state.last,
            task: task.to_owned(),
            event,
        };
        let mut line = serde_json::to_vec(&frame).unwrap_or_default();
        line.push(b'\n');
        let seq = state.last;
        state.kept.push_back((seq, Bytes::from(line)));
        drop(state);
        self.changed.notify_waiters();
    }

    /// Forgets the frames up to `seq`: the orchestrator has stored them.
    pub fn ack(&self, seq: u64) {
        let mut state = self.lock();
        while state.kept.front().is_some_and(|(s, _)| *s <= seq) {
            state.kept.pop_front();
        }
    }

    /// The frames after `after` (seq and line), at most `max_bytes` of them (at least one),
    /// or none yet. `None` when the log is closed and nothing after `after` is left.
    pub fn after(&self, after: u64, max_bytes: usize) -> Option<Vec<(u64, Bytes)>> {
        let state = self.lock();
        let mut out = Vec::new();
        let mut size = 0;
        for (seq, line) in state.kept.iter().filter(|(seq, _)| *seq > after) {
            if !out.is_empty() && size + line.len() > max_bytes {
                break;
            }
            size += line.len();
            out.push((*seq, line.clone()));
        }
        if out.is_empty() && state.closed {
            return None;
        }
        Some(out)
    }

    /// Waits for a kept frame after `after`, or the close. Frames already acknowledged are
    /// gone and never come back: a reader behind them (an orchestrator that restarted) waits
    /// for the next one rather than being woken for nothing, over and over.
    pub async fn wait_after(&self, after: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if state.kept.back().is_some_and(|(seq, _)| *seq > after) || state.closed {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Frames pushed and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.lock().kept.len()
    }

    /// No more frames: a reader gets what is kept, then the end of the stream.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{LogLevel, ToolEvent};

    fn log_event(message: &str) -> TaskEvent {
        TaskEvent::Tool {
            event: ToolEvent::Log {
                level: LogLevel::Info,
                message: message.into(),
            },
        }
    }

    fn seqs(lines: &[(u64, Bytes)]) -> Vec<u64> {
        lines
            .iter()
            .map(|(seq, l)| {
                assert_eq!(serde_json::from_slice::<Frame>(l).unwrap().seq, *seq);
                *seq
            })
            .collect()
    }

    #[test]
    fn frames_are_kept_until_acknowledged_and_resumed_after_any_seq() {
        let log = EventLog::default();
        for i in 0..5 {
            log.push("t_1", log_event(&format!("m{i}")));
        }
        assert_eq!(seqs(&log.after(0, usize::MAX).unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(&log.after(3, usize::MAX).unwrap()), [4, 5]);
        log.ack(2);
        assert_eq!(log.unacked(), 3);
        assert_eq!(seqs(&log.after(0, usize::MAX).unwrap()), [3, 4, 5]);
        // A byte budget still hands out at least one frame.
        assert_eq!(seqs(&log.after(0, 1).unwrap()), [3]);
        log.close();
        assert_eq!(seqs(&log.after(4, usize::MAX).unwrap()), [5]);
        assert!(log.after(5, usize::MAX).is_none(), "closed and drained");
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_the_next_frame() {
        let log = std::sync::Arc::new(EventLog::default());
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.wait_after(0).await })
        };
        tokio::task::yield_now().await;
        log.push("t_1", log_event("x"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test]
    async fn a_reader_behind_acknowledged_frames_waits_for_the_next_one() {
        let log = EventLog::default();
        log.push("t", log_event("a"));
        log.push("t", log_event("b"));
        log.ack(2);
        assert_eq!(log.after(0, 1 << 20).unwrap(), []);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), log.wait_after(0)).await;
        assert!(waited.is_err(), "nothing new: it waits");
        let log = std::sync::Arc::new(log);
        let reader = tokio::spawn({
            let log = log.clone();
            async move { log.wait_after(0).await }
        });
        log.push("t", log_event("c"));
        reader.await.unwrap();
        let lines = log.after(0, 1 << 20).unwrap();
        assert_eq!(lines.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [3]);
    }
}
