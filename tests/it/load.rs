//! Eight `regbuild push` processes at once, sharing layers, into the same repositories of the
//! real registry: all succeed and every result is pullable intact.

use crate::common::*;

#[test]
fn eight_concurrent_pushes_sharing_layers_all_succeed_intact() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    // One shared layer (the same bytes in every context), one layer of each push's own.
    let shared: String = (0..50_000).map(|i| format!("shared line {i}\n")).collect();
    let contexts: Vec<_> = (0..8)
        .map(|i| {
            context_with(&[
                (
                    "Dockerfile",
                    "FROM scratch\nCOPY shared.txt /shared.txt\nCOPY own.txt /own.txt\nUSER 1\n",
                ),
                ("shared.txt", &shared),
                ("own.txt", &format!("push number {i}\n")),
            ])
        })
        .collect();
    let children: Vec<_> = contexts
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            // Two repositories, four pushes each; every push has its own tag.
            let repo = if i % 2 == 0 { "load/even" } else { "load/odd" };
            regbuild(&[
                "push",
                "--no-progress",
                "-t",
                &format!("{host}/{repo}:{i}"),
                ctx.path().to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (i, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "push {i}: {}", stderr(out));
    }
    for (i, out) in outputs.iter().enumerate() {
        let repo = if i % 2 == 0 { "load/even" } else { "load/odd" };
        let printed = stdout(out).lines().last().unwrap().to_string();
        let digest = printed.rsplit('@').next().unwrap().to_string();
        assert_eq!(skopeo_digest(&format!("{host}/{repo}:{i}"), &[]), digest);
        // skopeo verifies every blob it copies.
        let (_k, bundle) = pull_and_unpack(&format!("{host}/{repo}:{i}"), &[]);
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/shared.txt")).unwrap(),
            shared
        );
        assert_eq!(
            std::fs::read_to_string(bundle.join("rootfs/own.txt")).unwrap(),
            format!("push number {i}\n")
        );
    }
}
