//! Stages that do not depend on each other are built at the same time: two RUN steps in
//! independent stages meet over the loopback network (which only works if both run at
//! once), a stage that fails ends the others at once, leaving nothing behind, and steps
//! sharing a locked cache mount take turns.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::run_steps::{busybox_base, push_dockerfile};

#[test]
fn independent_stages_run_at_the_same_time() {
    let _turn = heavy_or_timed();
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let port = free_port();
    // The listener gives up after 20 s: built one stage after the other, the talker would
    // only start once the listener had failed. Both sides check a token, and the answer to
    // it, so a stray connection (another test's readiness probe on a reused port) or a
    // foreign server on the port only costs a retry. The listener answers only after it
    // has read and recorded the talker's line: had it answered at once, a talker whose
    // `echo` was scheduled late could take the answer and leave before sending its line.
    let token = format!("tok{port}x{}", std::process::id());
    let df = format!(
        "FROM {host}/base/busybox:1 AS listener\n\
         RUN i=0; until grep -q hi-{token} /got 2>/dev/null; do i=$((i+1)); [ $i -le 5 ] || exit 8; \
           timeout 20 nc -l -p {port} -e sh -c 'read x; [ \"$x\" = hi-{token} ] || exit 1; echo \"$x\" > /got; echo ack-{token}'; \
           done; echo hi > /got\n\
         FROM {host}/base/busybox:1 AS talker\n\
         RUN i=0; until echo hi-{token} | timeout 2 nc 127.0.0.1 {port} | grep -q ack-{token}; do \
           i=$((i+1)); [ $i -lt 150 ] || exit 9; sleep 0.1; done; echo sent > /sent\n\
         FROM scratch\n\
         COPY --from=listener /got /got\n\
         COPY --from=talker /sent /sent\n"
    );
    // A fresh cache: both stages unpack the same base layer at the same time.
    let cache = tempfile::tempdir().unwrap();
    let tag = format!("{host}/apps/stages:1");
    let out = push_dockerfile(&tag, &df, &[], &["--json"], Some(cache.path()));
    assert!(
        out.status.success(),
        "regbuild failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let report: serde_json::Value = json(&out);
    let stages: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["listener", "talker"],
        "steps in stage order: {report}"
    );
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("got")).unwrap(), "hi\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("sent")).unwrap(),
        "sent\n"
    );
}

#[test]
fn a_failing_stage_ends_the_stages_running_beside_it() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    let port = free_port();
    // A number no other process has on its command line.
    let seconds = format!("87{}", free_port());
    // The slow stage listens only once its `sleep` runs, so when the failing stage has
    // connected, the slow stage's step is running. Built one after the other, the slow
    // stage would give up listening after 30 s and fail instead.
    let df = format!(
        "FROM {host}/base/busybox:1 AS slow\n\
         RUN sleep {seconds} & while [ \"$(cat /proc/$!/comm)\" != sleep ]; do :; done; timeout 30 nc -l -p {port} || exit 7; wait\n\
         FROM {host}/base/busybox:1 AS failing\n\
         RUN i=0; until nc 127.0.0.1 {port} </dev/null; do i=$((i+1)); [ $i -lt 300 ] || exit 9; sleep 0.1; done; exit 3\n\
         FROM scratch\n\
         COPY --from=slow /etc/passwd /a\n\
         COPY --from=failing /etc/passwd /b\n"
    );
    let ctx = context_with(&[("Dockerfile", &df)]);
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("{host}/apps/cancelled:1");
    let started = Instant::now();
    let out = regbuild(&["push", "-t", &tag, &ctx.path().display().to_string()])
        .env("REGBUILD_CACHE", cache.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:4: RUN i=0; until nc") && err.contains(": exit status 3"),
        "the failing stage's line and status: {err}"
    );
    assert!(
        !err.contains("Dockerfile:2:"),
        "the other stage did not fail: {err}"
    );
    assert!(
        took < Duration::from_secs(60),
        "the running stage was ended, not waited for: {took:?}"
    );
    assert!(
        processes_with(&format!("sleep {seconds}")).is_empty(),
        "the running stage's processes are gone"
    );
    assert!(processes_with(&format!("timeout 30 nc -l -p {port}")).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&cache.path().display().to_string()),
        "no mount left: {mounts}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let scratch: Vec<_> = std::fs::read_dir(cache.path().join("run-tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(scratch.is_empty(), "step scratch left: {scratch:?}");
    assert_eq!(
        http_status("GET", &host, "/v2/apps/cancelled/manifests/1"),
        Some(404),
        "no tag"
    );
}

#[test]
fn stages_sharing_a_locked_cache_mount_take_turns_without_waiting_for_each_other() {
    let reg = Distribution::start();
    let host = reg.host.clone();
    busybox_base(&host, "base/busybox");
    // Each step appends to the cache, waits, then copies what the cache holds: one after
    // the other, the first sees one line and the second two.
    let step = |name: &str| {
        format!(
            "FROM {host}/base/busybox:1 AS {name}\n\
             RUN --mount=type=cache,id=turns,target=/c,sharing=locked echo {name} >> /c/log && sleep 1 && cp /c/log /log\n"
        )
    };
    let df = format!(
        "{}{}FROM scratch\nCOPY --from=a /log /a\nCOPY --from=b /log /b\n",
        step("a"),
        step("b")
    );
    let ctx = context_with(&[("Dockerfile", &df)]);
    let cache = tempfile::tempdir().unwrap();
    let tag = format!("{host}/apps/turns:1");
    let mut child = regbuild(&["push", "-t", &tag, &ctx.path().display().to_string()])
        .env("REGBUILD_CACHE", cache.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded: a step waiting for the lock in a way that stops the other stage would hang
    // for the lock's hour.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the build did not finish: a stage waits for a lock the other cannot let go");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let (_d, bundle) = pull_and_unpack(&tag, &[]);
    let rootfs = bundle.join("rootfs");
    let mut seen: Vec<String> = ["a", "b"]
        .iter()
        .map(|f| std::fs::read_to_string(rootfs.join(f)).unwrap())
        .collect();
    seen.sort_by_key(|s| s.lines().count());
    assert_eq!(seen[0].lines().count(), 1, "one at a time: {seen:?}");
    assert_eq!(seen[1].lines().count(), 2, "{seen:?}");
}
