fn main() -> std::process::ExitCode {
    regbuild::cli::main()
}
