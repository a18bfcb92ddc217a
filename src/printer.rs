//! The printer: the one place that writes to stdout and stderr. Data (plans, exports, JSON)
//! goes to stdout, written as it is rendered and ending the process quietly on a closed pipe
//! (`mfactl plan | head`); status lines, progress bars and prompts go to stderr. Nothing below
//! the shell prints: `ops/`, the store and the core return values and the shell prints them here.

use crate::error::Failure;
use crate::sources::io_reason;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// A status line on stderr, unless `quiet` (`-q`).
pub fn status(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("{msg}");
    }
}

/// Each line of a failure on stderr, as the process ends with its exit code.
pub fn failure(f: &Failure) {
    for line in &f.lines {
        eprintln!("{line}");
    }
}

/// The status lines of a committed apply: what it did, and where its passwords are.
pub fn applied(quiet: bool, plan: &crate::plan::Plan, applied: &crate::ops::apply::Applied) {
    let s = plan.summary();
    status(
        quiet,
        &format!(
            "Apply complete: {} change{} for {} user{}; store revision {}; plan {}.",
            s.changes,
            if s.changes == 1 { "" } else { "s" },
            s.users,
            if s.users == 1 { "" } else { "s" },
            applied.revision,
            plan.id
        ),
    );
    if let Some((f, n)) = &applied.credentials {
        status(
            quiet,
            &format!(
                "{n} temporary password{} written to {} (mode 0600); hand them over out of band, \
                 then delete it.",
                if *n == 1 { "" } else { "s" },
                f.display()
            ),
        );
    }
}

/// Asks on the terminal (stderr) and reads the answer from stdin: `true` only for `yes`.
pub fn confirm(question: &str) -> Result<bool, Failure> {
    eprint!("\n{question} Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::error(format!("reading the answer: {}", io_reason(&e))))?;
    Ok(line.trim() == "yes")
}

/// Writes data to stdout; a closed pipe (`mfactl plan | head`) ends the process quietly.
pub fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()) {
        stdout_failed(e);
    }
}

/// Streams text to stdout through a buffer, as [`out`] writes it but without first building the
/// whole text: large plans and exports are written piece by piece.
pub fn out_with(write: impl FnOnce(&mut dyn std::fmt::Write) -> std::fmt::Result) {
    let mut sink = Stdout::new();
    let written = write(&mut sink);
    sink.finish(written);
}

/// An `io::Write` as a `fmt::Write`, keeping the I/O error that stopped it.
pub struct Sink<W: Write> {
    w: W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Sink<W> {
    pub fn new(w: W) -> Sink<W> {
        Sink { w, failed: None }
    }

    /// Flushes what was written, given how the writing ended; the writer back, or the error.
    pub fn finish(mut self, written: std::fmt::Result) -> std::io::Result<W> {
        match (written, self.failed.take()) {
            (_, Some(e)) => Err(e),
            (Err(_), None) => Err(std::io::Error::other("formatting failed")),
            (Ok(()), None) => self.w.flush().map(|_| self.w),
        }
    }
}

impl<W: Write> std::fmt::Write for Sink<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.w.write_all(s.as_bytes()).map_err(|e| {
            self.failed = Some(e);
            std::fmt::Error
        })
    }
}

/// Buffered stdout as a `fmt::Write`, for writing a long text piece by piece; a closed pipe
/// (`mfactl plan | head`) ends the process quietly, any other failure with a message.
pub struct Stdout(Sink<std::io::BufWriter<std::io::StdoutLock<'static>>>);

impl Stdout {
    pub fn new() -> Stdout {
        Stdout(Sink::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout().lock(),
        )))
    }

    /// Flushes what was written; `written` is how the writing ended.
    pub fn finish(self, written: std::fmt::Result) {
        if let Err(e) = self.0.finish(written) {
            stdout_failed(e);
        }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout::new()
    }
}

impl std::fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write_str(s)
    }
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {}", io_reason(&e));
    std::process::exit(1);
}

/// The progress bar of a long write (apply, import) on stderr: only when stderr is a terminal
/// and `-q` is not given, and only once the command has run for more than a second, so short
/// runs and pipelines print nothing. Cleared when dropped.
pub struct Progress {
    what: &'static str,
    started: std::time::Instant,
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(quiet: bool, what: &'static str) -> Progress {
        Progress {
            what,
            started: std::time::Instant::now(),
            enabled: !quiet && std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    /// `done` of `total` items written.
    pub fn update(&mut self, done: usize, total: usize) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() {
            if self.started.elapsed() < Duration::from_secs(1) || done >= total {
                return;
            }
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(self.what);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
