fn main() -> std::process::ExitCode {
    // RUN steps re-execute this program as their sandbox helper (regbuild-sandbox).
    regbuild_sandbox::helper::main_if_helper();
    // Descriptors the caller left open (`exec 7<token; regbuild push …`) go to no program
    // this one starts (the sandbox closes them for steps whatever happens here).
    let _ = regbuild_sandbox::confine::close_on_exec_from(3);
    // Rootless unpacks that keep owners re-execute this program in a user namespace.
    if let Some((task, args)) = regbuild_sandbox::userns::enter_if_task() {
        std::process::exit(regbuild::builder::run::userns_task(&task, &args));
    }
    regbuild::cli::main()
}
