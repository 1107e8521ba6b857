//! `.dockerignore` exceptions inside an excluded directory, end to end on the real registry:
//! the context holds what BuildKit's context transfer would send (an excluded directory is
//! entered when an exception may match below it), so `COPY . /` and a COPY of the
//! re-included file both see it. Layers are read back header by header.

use std::collections::BTreeSet;

use crate::common::layers::pushed_layers;
use crate::common::*;

/// The paths of each layer of `tag`.
fn layer_paths(tag: &str) -> Vec<BTreeSet<String>> {
    pushed_layers(tag)
        .into_iter()
        .map(|l| l.into_keys().collect())
        .collect()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[test]
fn an_exception_inside_an_excluded_directory_is_in_the_context() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY . /all/\nCOPY docs/README.md /readme\n",
        ),
        (".dockerignore", "docs\n!docs/README.md\n"),
        ("docs/README.md", "read me\n"),
        ("docs/other.md", "left out\n"),
        ("docs/sub/deep.md", "left out\n"),
        ("src/main.rs", "fn main() {}\n"),
    ]);
    let tag = format!("{}/ignore/docs:1", reg.host);
    push(ctx.path(), &tag, &[]);
    let layers = pushed_layers(&tag);
    let paths: Vec<BTreeSet<String>> = layers.iter().map(|l| l.keys().cloned().collect()).collect();
    assert_eq!(
        paths[0],
        set(&[
            "all/",
            "all/.dockerignore",
            "all/Dockerfile",
            "all/docs/",
            "all/docs/README.md",
            "all/src/",
            "all/src/main.rs",
        ])
    );
    assert_eq!(paths[1], set(&["readme"]));
    assert_eq!(layers[1]["readme"].data, b"read me\n");
}

#[test]
fn everything_excluded_but_one_nested_directory() {
    let reg = Distribution::start();
    let ctx = context_with(&[
        ("Dockerfile", "FROM scratch\nCOPY . /\n"),
        (".dockerignore", "**\n!util/docker/web\n"),
        ("util/docker/web/index.html", "<html/>"),
        ("util/docker/web/css/site.css", "body{}"),
        ("util/docker/other.txt", "no"),
        ("util/x.txt", "no"),
        ("top.txt", "no"),
    ]);
    let tag = format!("{}/ignore/web:1", reg.host);
    push(ctx.path(), &tag, &[]);
    assert_eq!(
        layer_paths(&tag),
        vec![set(&[
            "util/",
            "util/docker/",
            "util/docker/web/",
            "util/docker/web/css/",
            "util/docker/web/css/site.css",
            "util/docker/web/index.html",
        ])]
    );
}
