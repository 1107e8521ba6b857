//! The sandbox's helper process (see `regbuild_sandbox::helper`). Not meant to be run by hand.

fn main() {
    regbuild_sandbox::helper::main_if_helper();
    eprintln!(
        "regbuild-sandbox-helper: internal helper of regbuild's sandbox, not to be run by hand"
    );
    std::process::exit(2);
}
