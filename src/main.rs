//! The `revelio` binary; its commands are the library's command-line layer (src/cli/).

fn main() -> std::process::ExitCode {
    revelio::cli::main()
}
