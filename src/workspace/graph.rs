//! Ordering workspace images by dependency, without I/O: which images each one builds on,
//! and levels such that every image comes after everything it depends on (images in one
//! level are independent of each other).

use std::collections::{BTreeMap, BTreeSet};

use super::file::{WorkspaceError, WorkspaceImage};
use regbuild_oci::reference::ImageRef;

/// Which workspace image, if any, a reference written in a Dockerfile names: its name, or
/// one of its tags.
pub fn workspace_target<'a>(
    images: &'a [WorkspaceImage],
    written: &str,
) -> Option<&'a WorkspaceImage> {
    if let Some(i) = images.iter().find(|i| i.name == written) {
        return Some(i);
    }
    let r: ImageRef = written.parse().ok()?;
    images.iter().find(|i| {
        i.tags.iter().any(|t| {
            t.parse::<ImageRef>().is_ok_and(|tr| {
                tr.registry == r.registry && tr.repository == r.repository && tr.tag == r.tag
            })
        })
    })
}

/// `deps[name]` = the workspace images `name` builds on (from its Dockerfile's references
/// and `depends_on`); `references[name]` = the references it wrote for them.
pub fn dependencies(
    images: &[WorkspaceImage],
    referenced: &BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, BTreeSet<String>>, WorkspaceError> {
    let mut deps = BTreeMap::new();
    for image in images {
        let mut set = BTreeSet::new();
        for d in &image.depends_on {
            if !images.iter().any(|i| &i.name == d) {
                return Err(WorkspaceError::Missing {
                    image: image.name.clone(),
                    missing: d.clone(),
                });
            }
            set.insert(d.clone());
        }
        for r in referenced.get(&image.name).into_iter().flatten() {
            if let Some(target) = workspace_target(images, r) {
                set.insert(target.name.clone());
            }
        }
        deps.insert(image.name.clone(), set);
    }
    Ok(deps)
}

/// Levels of images: each image's dependencies are all in earlier levels. A cycle is an
/// error naming it.
pub fn levels(
    deps: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<Vec<String>>, WorkspaceError> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < deps.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(n, d)| !done.contains(*n) && d.iter().all(|x| done.contains(x)))
            .map(|(n, _)| n.clone())
            .collect();
        if ready.is_empty() {
            return Err(WorkspaceError::Cycle(find_cycle(deps, &done)));
        }
        done.extend(ready.iter().cloned());
        out.push(ready);
    }
    Ok(out)
}

/// A cycle among the images not `done`, as `a -> b -> a`.
fn find_cycle(deps: &BTreeMap<String, BTreeSet<String>>, done: &BTreeSet<String>) -> String {
    let Some(start) = deps.keys().find(|k| !done.contains(*k)) else {
        return String::new();
    };
    let mut path = vec![start.clone()];
    let mut current = start.clone();
    for _ in 0..=deps.len() {
        let next = deps
            .get(&current)
            .and_then(|d| d.iter().find(|x| !done.contains(*x)).cloned());
        let Some(next) = next else { break };
        if let Some(pos) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<String> = path[pos..].to_vec();
            cycle.push(next);
            return cycle.join(" -> ");
        }
        path.push(next.clone());
        current = next;
    }
    path.join(" -> ")
}

/// Every image that depends on `name`, transitively.
pub fn dependents(deps: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![name.to_string()];
    while let Some(n) = stack.pop() {
        for (k, d) in deps {
            if d.contains(&n) && out.insert(k.clone()) {
                stack.push(k.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, tag: &str, depends_on: &[&str]) -> WorkspaceImage {
        WorkspaceImage {
            name: name.into(),
            context: name.into(),
            dockerfile: None,
            tags: vec![tag.into()],
            platforms: vec![],
            build_args: Default::default(),
            depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn refs(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_hierarchy_is_ordered_in_levels() {
        let images = vec![
            img("java", "r/java:1", &[]),
            img("base", "r/base:1", &[]),
            img("glibc", "r/glibc:1", &[]),
            img("gcc", "r/gcc:1", &[]),
            img("zlib", "r/zlib:1", &[]),
        ];
        let referenced = refs(&[
            ("glibc", &["r/base:1"]),
            ("zlib", &["glibc"]),
            ("gcc", &["r/glibc:1", "docker.io/library/busybox:1"]),
            ("java", &["r/gcc:1", "r/zlib:1"]),
        ]);
        let deps = dependencies(&images, &referenced).unwrap();
        let lv = levels(&deps).unwrap();
        assert_eq!(
            lv,
            vec![
                vec!["base".to_string()],
                vec!["glibc".to_string()],
                vec!["gcc".to_string(), "zlib".to_string()],
                vec!["java".to_string()],
            ]
        );
        assert_eq!(
            dependents(&deps, "glibc").into_iter().collect::<Vec<_>>(),
            vec!["gcc", "java", "zlib"]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let images = vec![img("a", "r/a:1", &[]), img("b", "r/b:1", &[])];
        let deps = dependencies(&images, &refs(&[("a", &["r/b:1"]), ("b", &["a"])])).unwrap();
        let e = levels(&deps).unwrap_err().to_string();
        assert!(e.contains("a -> b -> a"), "{e}");
    }

    #[test]
    fn a_missing_dependency_is_named() {
        let images = vec![img("a", "r/a:1", &["ghost"])];
        let e = dependencies(&images, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a`") && e.contains("`ghost`"), "{e}");
    }
}
