fn main() -> std::process::ExitCode {
    // RUN steps re-execute this program as their sandbox helper (regbuild-sandbox).
    regbuild_sandbox::helper::main_if_helper();
    // Not dumpable: regbuild holds registry credentials in memory, and a RUN step of the
    // chroot rung runs as the same user (ptrace and process_vm_readv are refused to it too);
    // no core dump carries them either. What it executes is dumpable again.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    // Descriptors the caller left open (`exec 7<token; regbuild push …`) go to no program
    // this one starts (the sandbox closes them for steps whatever happens here).
    let _ = regbuild_sandbox::confine::close_on_exec_from(3);
    // Rootless unpacks that keep owners re-execute this program in a user namespace.
    if let Some((task, args)) = regbuild_sandbox::userns::enter_if_task() {
        std::process::exit(regbuild::builder::run::userns_task(&task, &args));
    }
    regbuild::cli::main()
}
