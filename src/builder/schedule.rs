//! Which stages a build needs and in which order they may run: the dependency graph of the
//! evaluated stages (FROM a stage, `COPY --from` a stage, `RUN --mount=from=` a stage) and
//! the schedule that hands out every stage whose dependencies are built, so independent
//! stages run at the same time. Pure: nothing here builds anything (`orchestrate` does).
//! Steps of concurrent stages that share a `sharing=locked` cache mount take turns at the
//! step, not here (`run::mounts::wait_for_caches`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use regbuild_frontend::stages::{self, Base, CopyFrom, RunMount, StepKind};

/// The target stage and the stages it is built FROM (transitively): whose layers the image
/// holds.
pub fn final_chain(b: &stages::Build) -> HashSet<usize> {
    let mut chain = HashSet::new();
    let mut at = Some(b.target);
    while let Some(i) = at.filter(|i| *i < b.stages.len() && chain.insert(*i)) {
        at = match b.stages[i].base {
            Base::Stage(j) => Some(j),
            _ => None,
        };
    }
    chain
}

/// The target stage and every stage it depends on (FROM a stage, COPY --from a stage), in
/// Dockerfile order.
pub fn needed_stages(b: &stages::Build) -> Vec<usize> {
    let mut need = vec![false; b.stages.len()];
    let mut stack = vec![b.target];
    while let Some(i) = stack.pop() {
        if i >= need.len() || need[i] {
            continue;
        }
        need[i] = true;
        stack.extend(stage_sources(&b.stages[i]));
    }
    (0..need.len()).filter(|i| need[*i]).collect()
}

/// The stages and images a step reads from: `COPY --from`, `RUN --mount=from=`.
pub fn step_sources(kind: &StepKind) -> Vec<&CopyFrom> {
    match kind {
        StepKind::Copy(c) => c.from.iter().collect(),
        StepKind::Run(r) => {
            r.mounts
                .iter()
                .filter_map(|m| match m {
                    RunMount::Bind { from: Some(f), .. }
                    | RunMount::Cache { from: Some(f), .. } => Some(f),
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The stages `stage` reads: its FROM stage, then those its steps read from.
fn stage_sources(stage: &stages::Stage) -> Vec<usize> {
    let from = match stage.base {
        Base::Stage(j) => Some(j),
        _ => None,
    };
    let steps = stage.steps.iter().flat_map(|s| step_sources(&s.kind));
    from.into_iter()
        .chain(steps.filter_map(|f| match f {
            CopyFrom::Stage(j) => Some(*j),
            CopyFrom::Image(_) => None,
        }))
        .collect()
}

/// Hands out the needed stages as their dependencies are built.
#[derive(Debug)]
pub struct Schedule {
    /// Each stage still to start, with the stages it waits for.
    pending: BTreeMap<usize, BTreeSet<usize>>,
    done: BTreeSet<usize>,
}

impl Schedule {
    /// The schedule of `needed` (from [`needed_stages`]) in `b`.
    pub fn new(b: &stages::Build, needed: &[usize]) -> Schedule {
        let mut pending: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for &i in needed {
            let deps = stage_sources(&b.stages[i])
                .into_iter()
                .filter(|j| *j != i)
                .collect();
            pending.insert(i, deps);
        }
        Schedule {
            pending,
            done: BTreeSet::new(),
        }
    }

    /// Records that stage `i` is built.
    pub fn finished(&mut self, i: usize) {
        self.done.insert(i);
    }

    /// Records that stage `i` stopped (a dry run reached a step it does not execute): the
    /// stages that wait for it, directly or not, are taken out, never to start.
    pub fn stopped(&mut self, i: usize) {
        let mut blocked = BTreeSet::from([i]);
        loop {
            let next: Vec<usize> = self
                .pending
                .iter()
                .filter(|(_, deps)| !deps.is_disjoint(&blocked))
                .map(|(j, _)| *j)
                .collect();
            if next.is_empty() {
                return;
            }
            for j in next {
                self.pending.remove(&j);
                blocked.insert(j);
            }
        }
    }

    /// The stages that may start now (every dependency built), in Dockerfile order, taken
    /// out of the schedule. `running`: how many stages are being built. When nothing runs
    /// and nothing is ready (a stage reads a later one, or one the build does not make),
    /// the first pending stage is handed out anyway: it fails as it would alone, naming
    /// its line.
    pub fn take_ready(&mut self, running: usize) -> Vec<usize> {
        let ready: Vec<usize> = self
            .pending
            .iter()
            .filter(|(_, deps)| deps.is_subset(&self.done))
            .map(|(i, _)| *i)
            .collect();
        let ready = match (ready.is_empty(), running) {
            (true, 0) => self.pending.keys().next().copied().into_iter().collect(),
            _ => ready,
        };
        for i in &ready {
            self.pending.remove(i);
        }
        ready
    }

    /// Whether every stage has been handed out.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regbuild_frontend::stages::{CopySpec, RunSpec, Stage, Step};

    fn stage(index: usize, base: Base, steps: Vec<StepKind>) -> Stage {
        Stage {
            index,
            name: None,
            line: index * 10 + 1,
            base,
            platform: None,
            steps: steps
                .into_iter()
                .enumerate()
                .map(|(n, kind)| Step {
                    line: index * 10 + 2 + n,
                    text: String::new(),
                    kind,
                })
                .collect(),
            reachable: true,
        }
    }

    fn copy_from(j: usize) -> StepKind {
        StepKind::Copy(CopySpec {
            add: false,
            sources: vec!["/x".into()],
            dest: "/".into(),
            from: Some(CopyFrom::Stage(j)),
            chown: None,
            chmod: None,
            link: false,
            closure: false,
            sysroot: None,
            exclude: Vec::new(),
            parents: false,
            keep_git_dir: false,
            checksum: None,
            unpack: None,
            heredocs: Vec::new(),
        })
    }

    fn run(mounts: Vec<RunMount>) -> StepKind {
        StepKind::Run(RunSpec {
            command: stages::Command::Shell("true".into()),
            script: None,
            mounts,
            network: None,
            args: Vec::new(),
        })
    }

    fn bind_from(j: usize) -> RunMount {
        RunMount::Bind {
            from: Some(CopyFrom::Stage(j)),
            source: "/".into(),
            target: "/b".into(),
            rw: false,
        }
    }

    fn build(stages: Vec<Stage>) -> stages::Build {
        let target = stages.len() - 1;
        stages::Build {
            stages,
            target,
            unused_build_args: Vec::new(),
        }
    }

    #[test]
    fn a_stopped_stage_takes_the_stages_built_from_it_out_and_leaves_the_others() {
        // 0 → 1 (FROM 0) → 3 (COPY --from=1); 2 stands alone and 3 also reads it.
        let b = build(vec![
            stage(0, Base::Scratch, vec![]),
            stage(1, Base::Stage(0), vec![]),
            stage(2, Base::Scratch, vec![]),
            stage(3, Base::Scratch, vec![copy_from(1), copy_from(2)]),
        ]);
        let needed = needed_stages(&b);
        let mut s = Schedule::new(&b, &needed);
        assert_eq!(s.take_ready(0), [0, 2]);
        s.finished(2);
        s.stopped(0);
        assert!(s.is_empty(), "1 and 3 wait for 0, which stopped");
        assert_eq!(s.take_ready(0), Vec::<usize>::new());
    }

    /// Runs the schedule to its end, each wave finishing before the next is asked for;
    /// returns the waves handed out.
    fn waves(b: &stages::Build) -> Vec<Vec<usize>> {
        let needed = needed_stages(b);
        let mut s = Schedule::new(b, &needed);
        let mut out = Vec::new();
        while !s.is_empty() {
            let wave = s.take_ready(0);
            for i in &wave {
                s.finished(*i);
            }
            out.push(wave);
        }
        out
    }

    #[test]
    fn independent_stages_start_together_and_the_final_one_waits_for_both() {
        let b = build(vec![
            stage(0, Base::Scratch, vec![run(vec![])]),
            stage(1, Base::Scratch, vec![run(vec![])]),
            stage(2, Base::Scratch, vec![copy_from(0), copy_from(1)]),
        ]);
        assert_eq!(waves(&b), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn from_copy_from_and_mount_from_are_dependencies() {
        let b = build(vec![
            stage(0, Base::Scratch, vec![]),
            stage(1, Base::Stage(0), vec![]),
            stage(2, Base::Scratch, vec![run(vec![bind_from(1)])]),
            stage(3, Base::Scratch, vec![]),
            stage(4, Base::Scratch, vec![copy_from(2), copy_from(3)]),
        ]);
        assert_eq!(waves(&b), vec![vec![0, 3], vec![1], vec![2], vec![4]]);
    }

    #[test]
    fn a_stage_waits_until_every_dependency_is_finished() {
        let b = build(vec![
            stage(0, Base::Scratch, vec![]),
            stage(1, Base::Scratch, vec![]),
            stage(2, Base::Scratch, vec![copy_from(0), copy_from(1)]),
        ]);
        let mut s = Schedule::new(&b, &needed_stages(&b));
        assert_eq!(s.take_ready(0), vec![0, 1]);
        s.finished(1);
        assert!(s.take_ready(1).is_empty(), "stage 0 still runs");
        s.finished(0);
        assert_eq!(s.take_ready(0), vec![2]);
        assert!(s.is_empty());
    }

    #[test]
    fn stages_the_target_does_not_need_are_not_scheduled() {
        let b = build(vec![
            stage(0, Base::Scratch, vec![]),
            stage(1, Base::Scratch, vec![]),
            stage(2, Base::Stage(1), vec![]),
        ]);
        assert_eq!(waves(&b), vec![vec![1], vec![2]]);
        assert_eq!(final_chain(&b), HashSet::from([1, 2]));
    }

    #[test]
    fn a_stage_reading_a_stage_never_built_is_still_handed_out_to_fail() {
        let b = build(vec![
            stage(0, Base::Scratch, vec![]),
            stage(1, Base::Scratch, vec![copy_from(0), copy_from(7)]),
        ]);
        let needed = vec![0, 1];
        let mut s = Schedule::new(&b, &needed);
        assert_eq!(s.take_ready(0), vec![0]);
        s.finished(0);
        assert!(s.take_ready(1).is_empty(), "something still runs");
        assert_eq!(s.take_ready(0), vec![1], "nothing runs: handed out anyway");
    }
}
