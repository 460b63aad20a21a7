fn main() -> std::process::ExitCode {
    facenet::cli::main_with_args(std::env::args_os().collect())
}
