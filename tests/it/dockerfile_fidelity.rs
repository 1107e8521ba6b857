//! Real Dockerfiles build right (issue 21): patterns of public Dockerfiles that once failed
//! or gave a wrong image, each built against the real registry and read back.

use crate::common::*;
use crate::run_steps::busybox_base;

#[test]
fn steps_that_change_nothing_give_identical_layers_and_the_next_step_still_runs() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // The first two steps write nothing: two layers with one diff_id below the third step,
    // which overlayfs refused as a lower directory given twice (ELOOP).
    let df = format!(
        "FROM {host}/base/busybox:1\n\
         RUN cat /etc/motd\n\
         RUN ls /\n\
         RUN echo done > /done\n"
    );
    let tag = format!("{host}/fidelity/empty-layers:1");
    let (_keep, rootfs) = crate::run_steps::pushed_rootfs(&tag, &df);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("done")).unwrap(),
        "done\n"
    );
}

#[test]
fn copy_from_a_stage_takes_a_hard_link_whose_content_another_name_carries() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // Build tools hard-link what they make (cargo: `target/release/app` and its `deps/`
    // twin). In the layer, the content goes with the name that sorts first (`out/a`); the
    // other (`out/b`) is a link to it, and only the link is asked for.
    let df = format!(
        "FROM {host}/base/busybox:1 AS build\n\
         RUN mkdir -p /out && echo built > /out/a && ln /out/a /out/b\n\
         FROM {host}/base/busybox:1\n\
         COPY --from=build /out/b /usr/local/bin/app\n"
    );
    let tag = format!("{host}/fidelity/hard-link:1");
    let (_keep, rootfs) = crate::run_steps::pushed_rootfs(&tag, &df);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/local/bin/app")).unwrap(),
        "built\n"
    );
    assert!(
        !rootfs.join("out").exists(),
        "only what COPY asked for is in the image"
    );
}
