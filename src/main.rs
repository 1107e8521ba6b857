fn main() -> std::process::ExitCode {
    // RUN steps re-execute this program as their sandbox helper (regbuild-sandbox).
    regbuild_sandbox::helper::main_if_helper();
    regbuild::cli::main()
}
