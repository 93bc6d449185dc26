fn main() -> std::process::ExitCode {
    pg_standby::main()
}
