//! The documentation cannot lie: every block marked `sh runnable` in README.md and docs/
//! runs against a loopback registry (`scripts/doc-examples.sh`) and must succeed.

use std::process::Command;

use crate::common::*;

#[test]
fn every_runnable_example_of_the_documentation_runs() {
    let out = Command::new(repo_root().join("scripts/doc-examples.sh"))
        .env("REGBUILD", env!("CARGO_BIN_EXE_regbuild"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let ran: usize = text
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    assert!(ran >= 14, "the examples ran: {text}");
}

/// Every relative link of the documentation leads somewhere: the file exists and, when the
/// link names a section (`page.md#section`), the page has a heading with that anchor (as the
/// forge makes anchors: lower case, punctuation dropped, spaces as `-`, repeats numbered).
#[test]
fn every_link_of_the_documentation_leads_to_a_page_and_a_heading() {
    let root = repo_root();
    let mut pages = vec![
        root.join("README.md"),
        root.join("ARCHITECTURE.md"),
        root.join("SECURITY.md"),
        root.join("BENCHMARKS.md"),
    ];
    for dir in ["docs", "docs/reference"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let shown = format!("{}: {target}", page.strip_prefix(&root).unwrap().display());
            if !file.exists() {
                broken.push(format!("{shown} (no such file)"));
            } else if !anchor.is_empty()
                && !anchors(&std::fs::read_to_string(&file).unwrap_or_default())
                    .contains(&anchor.to_string())
            {
                broken.push(format!("{shown} (no such heading)"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: the scan is wrong"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of `[text](target)` links outside fenced code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in outside_fences(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

/// The anchors the forge gives a page's headings.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in outside_fences(text) {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let repeats = seen.iter().filter(|s| **s == slug).count();
        seen.push(slug.clone());
        out.push(if repeats == 0 {
            slug
        } else {
            format!("{slug}-{repeats}")
        });
    }
    out
}

fn outside_fences(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push(line);
        }
    }
    out
}
