//! Progress for long jobs: a bar with rate and ETA on a terminal, and plain lines (at most one
//! every 10 s, plus the last) when output is piped or logged, so Slurm logs stay readable.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    unit: String,
    total: u64,
    done: u64,
    message: String,
    start: Instant,
    last_line: Instant,
}

impl Progress {
    /// A progress display for `total` items of `unit` (e.g. "img", "step").
    pub fn new(what: &str, total: u64, unit: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(&format!(
                "{what} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            what: what.into(),
            unit: unit.into(),
            total,
            done: 0,
            message: String::new(),
            start: now,
            last_line: now,
        }
    }

    /// Items per second since the start.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// A short status shown after the counts (loss, accuracy...).
    pub fn set_message(&mut self, msg: impl Into<String>) {
        self.message = msg.into();
        if let Some(b) = &self.bar {
            b.set_message(self.message.clone());
        }
    }

    /// Marks `n` more items done.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(b) => b.inc(n),
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(10) || self.done >= self.total {
                    self.last_line = Instant::now();
                    self.print_line();
                }
            }
        }
    }

    /// Jumps to `done` items (a resumed job starts part-way).
    pub fn set_position(&mut self, done: u64) {
        self.done = done;
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    fn print_line(&self) {
        let rate = self.rate();
        let eta = if rate > 0.0 { (self.total.saturating_sub(self.done)) as f64 / rate } else { 0.0 };
        eprintln!(
            "{}: {}/{} {} ({rate:.1} {}/s, ETA {eta:.0} s) {}",
            self.what, self.done, self.total, self.unit, self.unit, self.message
        );
    }

    /// Ends the display (the bar is left on screen).
    pub fn finish(self) {
        match &self.bar {
            Some(b) => b.finish(),
            None => {
                if self.done < self.total {
                    self.print_line();
                }
            }
        }
    }
}
