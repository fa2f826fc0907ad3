//! What a release says while it goes live: sent line by line to a client that watches
//! (`push`), and kept, its last [`MAX_RELEASE_OUTPUT`] bytes, as the release's output
//! (`releases:output`), so whoever looks later, a change that nobody watched included,
//! reads how it went and why it failed.

use futures::SinkExt;
use parking_lot::Mutex;
use std::collections::VecDeque;
use wdeploy_api::server::Progress;
use wdeploy_store::MAX_RELEASE_OUTPUT;

pub(super) struct Reporter {
    watcher: Option<Progress>,
    kept: Mutex<Kept>,
}

/// The newest lines said, within [`MAX_RELEASE_OUTPUT`] bytes with the note of how many
/// older ones were let go.
#[derive(Default)]
struct Kept {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: usize,
}

/// Room kept for the note of lines let go, so the output stays within the store's limit.
const NOTE_ROOM: usize = 64;

impl Reporter {
    /// Lines kept, and sent to `watcher` as well when one watches: the client of a
    /// `push`, a `config:set` or a `rollback`; nobody for a change made through the
    /// dashboard.
    pub(super) fn new(watcher: Option<Progress>) -> Reporter {
        Reporter {
            watcher,
            kept: Mutex::default(),
        }
    }

    /// Says `line` (one line, without its newline).
    pub(super) async fn say(&self, line: impl Into<String>) {
        self.raw(format!("{}\n", line.into())).await;
    }

    /// Says `text` as it is (lines ending in newlines).
    pub(super) async fn raw(&self, text: String) {
        self.keep(&text);
        if let Some(tx) = &self.watcher {
            let _ = tx.clone().send(text).await;
        }
    }

    /// Keeps `text` in the output only: what the watcher hears otherwise (the error that
    /// ends a failed release is the answer to its request).
    pub(super) fn keep(&self, text: &str) {
        let mut kept = self.kept.lock();
        for line in text.split_inclusive('\n') {
            // A line longer than all the room there is keeps its end.
            let room = MAX_RELEASE_OUTPUT - NOTE_ROOM;
            let line = match line.len().checked_sub(room) {
                Some(over) if over > 0 => {
                    let mut cut = over;
                    while !line.is_char_boundary(cut) {
                        cut += 1;
                    }
                    &line[cut..]
                }
                _ => line,
            };
            kept.bytes += line.len();
            kept.lines.push_back(line.to_string());
            while kept.bytes > room {
                let Some(oldest) = kept.lines.pop_front() else {
                    break;
                };
                kept.bytes -= oldest.len();
                kept.dropped += 1;
            }
        }
    }

    /// What was said, oldest first; begins with a note when older lines were let go.
    pub(super) fn output(&self) -> String {
        let kept = self.kept.lock();
        let mut output = String::with_capacity(kept.bytes + NOTE_ROOM);
        if kept.dropped > 0 {
            output.push_str(&format!("({} earlier lines not kept)\n", kept.dropped));
        }
        kept.lines.iter().for_each(|line| output.push_str(line));
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watcher_hears_every_line_and_the_output_keeps_the_newest() {
        let (tx, mut rx) = futures::channel::mpsc::channel(16);
        let reporter = Reporter::new(Some(tx));
        reporter.say("-----> Starting v2").await;
        reporter.raw("       a\n       b\n".to_string()).await;
        reporter.keep("error: it failed\n");
        let heard: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(heard, ["-----> Starting v2\n", "       a\n       b\n"]);
        assert_eq!(
            reporter.output(),
            "-----> Starting v2\n       a\n       b\nerror: it failed\n"
        );

        let chatty = Reporter::new(None);
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..2000 {
            chatty.raw(line.clone()).await;
        }
        chatty.say("the end").await;
        let output = chatty.output();
        assert!(output.len() <= MAX_RELEASE_OUTPUT, "{}", output.len());
        assert!(output.starts_with("("), "{}", &output[..80]);
        assert!(output.contains(" earlier lines not kept)\n"));
        assert!(output.ends_with(&format!("{line}the end\n")));
        // One line longer than the whole room keeps its end.
        let long = Reporter::new(None);
        long.keep(&format!(
            "{}é{}\n",
            "a".repeat(MAX_RELEASE_OUTPUT),
            "z".repeat(10)
        ));
        let output = long.output();
        assert!(output.len() <= MAX_RELEASE_OUTPUT);
        assert!(
            output.ends_with("zzzzzzzzzz\n"),
            "{}",
            &output[output.len() - 20..]
        );
    }
}
