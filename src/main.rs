//! The `revelio` binary; its commands are the library's command-line layer (src/cli/).

/// Output piped into `head` or `grep -q` ends the process quietly, as it does for Unix tools; Rust
/// ignores SIGPIPE by default, so the next print would panic on the closed pipe instead.
#[cfg(target_os = "linux")]
fn default_sigpipe() {
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: restores the default disposition of one signal before any thread is started.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

fn main() -> std::process::ExitCode {
    #[cfg(target_os = "linux")]
    default_sigpipe();
    // Large op outputs reuse freed memory instead of being page-faulted in again (cpu::memory).
    revelio::cpu::memory::retain_freed_memory();
    revelio::cli::main()
}
