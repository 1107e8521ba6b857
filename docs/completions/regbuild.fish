# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_regbuild_global_optspecs
    string join \n jobs= insecure-registry= no-progress retries= deadline= chunk-threshold= chunk-size= upload-strategy= no-upload-fallback v/verbose h/help V/version
end

function __fish_regbuild_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_regbuild_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_regbuild_using_subcommand
    set -l cmd (__fish_regbuild_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c regbuild -n "__fish_regbuild_needs_command" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_needs_command" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_needs_command" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_needs_command" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_needs_command" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_needs_command" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_needs_command" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_needs_command" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_needs_command" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_needs_command" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_needs_command" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_needs_command" -s V -l version -d 'Print version'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "promote" -d 'Copy an image or index, with its referrers, from SRC to DST (mounts on one registry)'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "push" -d 'Build a Dockerfile (RUN in a rootless sandbox, no daemon) and push the image straight to the registry'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "inspect" -d 'Per-layer sizes, file counts, wasted bytes and setuid files of an image; `--ci` gates'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "lock" -d 'Pin every base of a Dockerfile by digest in regbuild.lock'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "outdated" -d 'Report bases whose tags moved since they were pinned (exit 1 when one did)'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "rebase" -d 'Move an image onto a new base without rebuilding (layers mounted, nothing re-uploaded)'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "prune" -d 'Free the local cache: unpacked layers, RUN layers and cache mounts unused for a while'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "gen-docs" -d 'Write the CLI reference (Markdown), man pages and shell completions under OUT'
complete -c regbuild -n "__fish_regbuild_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l json -d 'Print one JSON object instead of text'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l dry-run -d 'Print what would be done (exists / mount-from / copy-from per blob) and write nothing'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l no-referrers -d 'Do not copy referrers (signatures, SBOMs, attestations)'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l with-build-cache -d 'Also copy regbuild\'s build cache artifacts (builder stages\' layers, path lists, cache mounts), which are left behind by default'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand promote" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -s f -l file -d 'The Dockerfile (default: CONTEXT/Dockerfile)' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -s t -l tag -d 'Required (unless --all): where to push, `host/repository:tag` (repeatable; every tag gets the same digest)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l cache-from -d 'An image whose layers may be reused by layer key instead of packed (repeatable; the tags being pushed are always looked at). `--no-cache` turns this off too' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l workspace -d 'The workspace file for --all' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l build-arg -d 'Build argument `KEY=VALUE` (repeatable; `KEY` alone takes it from the environment)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l target -d 'The stage to build (default: the last)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l platform -d 'Platforms to build for, comma-separated (`os/arch[/variant]`); several push an index' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l lockfile -d 'The lock file (default: regbuild.lock beside the Dockerfile). When it exists, bases are built from its pinned digests and new bases are added to it' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l digest-file -d 'Write the pushed digest to this file' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l metadata-file -d 'Write what was pushed as buildx\'s `--metadata-file` JSON (`containerimage.digest`, `containerimage.descriptor`, `containerimage.config.digest`, `image.name`): for the CI steps that sign or attest after the push' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l squash -d 'One layer for the whole image (`--squash`, base included) or only for the layers this build adds (`--squash=new`)' -r -f -a "none\t''
new\t''
all\t''"
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l compression -d 'Layer compression: `gzip[:level]` (default level 6) or `zstd[:level]` (default 3; media type `application/vnd.oci.image.layer.v1.tar+zstd`)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l layering -d '`single`: one layer per COPY/ADD. `auto`: a COPY of 32 MiB or more is split into several layers by path (content-defined), so that a changed file re-packs and re-uploads only its part' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l secret -d 'A secret for `RUN --mount=type=secret,id=ID`: `id=ID,src=PATH` or `id=ID,env=VAR` (repeatable). Never written to a layer, the config, a log or --json' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l network -d 'The network RUN steps get unless they say (`RUN --network`): `default` (what this machine reaches), `none` (loopback only) or `host`' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l snapshotter -d 'How RUN steps get their filesystem and layer: `overlayfs`, `native` (a copy of the root filesystem per step and a snapshot diff: slower, works anywhere) or `auto` (overlayfs, else native, said at -v)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l isolation -d 'How RUN steps are isolated: `sandbox` (new mount, pid, ipc and uts namespaces; rootless through a user namespace), `userns` (root in a container without CAP_SYS_ADMIN that allows user namespaces, as podman\'s default: the same namespaces in a user namespace of the container\'s ids, no /proc), `chroot` (root in a container that refuses namespaces, as Docker\'s default: no namespace, the container is the sandbox, as with kaniko) or `auto` (the first of these that works, said at -v and in a warning)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l max-layer-file-size -d 'Lowers the largest file a RUN step may leave below the 64 GiB regbuild\'s layer reader accepts (never raises it). Hidden: for tests, which cannot write 64 GiB' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l provenance -d 'Push SLSA v1 build provenance (an in-toto statement) of each image as a referrer of its manifest: `mode=min` (the default: without build args) or `mode=max`' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l attest -d 'buildx\'s spelling: `type=sbom`, `type=provenance[,mode=min|max]` (repeatable)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l registry-cache -d 'What the build cache artifact pushed beside the image holds, which a fresh runner reads: `min` (default: the path lists of the image\'s base and RUN layers, its RUN steps\' key inputs, cache mounts with --cache-mounts registry), `max` (also every builder stage\'s layers, so a fresh runner re-runs none of them: they become as readable as the image) or `off`' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l cache-mounts -d 'Where `RUN --mount=type=cache` directories live: `local` (this machine\'s cache directory only) or `registry` (also stored in the build cache artifact after the build when changed, and restored on a runner that lacks them)' -r -f -a "local\t''
registry\t''"
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l cache-mounts-max -d 'With `--cache-mounts registry`: a cache mount holding more than this is kept local (warned)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l debug-tag -d 'Also push a debug variant here: the image plus the layers of --debug-from on top' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l debug-from -d 'The image whose layers the debug variant adds (e.g. a busybox providing /bin/sh)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l no-stream-upload -d 'Do not upload new layers while they are packed (one streamed PATCH of unknown length); upload each after packing instead, once a HEAD says it is missing'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l all -d 'Build every image of the workspace (regbuild.toml) in dependency order. Each image\'s tags, platforms and build args come from the workspace file; options that would apply to one image (`-t`, `--sbom`, `--squash`, `--cache-from`, …) are refused with it'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l rebase -d 'With --all: images whose base changed but whose own inputs did not are rebased onto the new base instead of rebuilt'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l locked -d 'Fail if the lock file is missing or would have to change'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l json -d 'Print one JSON object instead of text'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l dry-run -d 'Print the plan (exists / mount-from / upload per blob, each manifest) and write nothing'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l keep-setuid -d 'Keep setuid/setgid bits on files this build writes (they are stripped by default)'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l sbom -d 'Push a software bill of materials of each image as referrers of its manifest: SPDX 2.3 JSON and CycloneDX 1.6 JSON (its operating-system packages from dpkg\'s and apk\'s databases, each with the layer and instruction that brought it, the base image by digest, the layers this build added)'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l no-cache -d 'Do not use the local layer cache ($REGBUILD_CACHE, default ~/.cache/regbuild)'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l allow-root -d 'Do not warn when the image runs as root'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand push" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l platform -d 'The platform to pick from an index (`os/arch[/variant]`)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l lowest-efficiency -d '--ci: fail when the efficiency (0..1, share of bytes not wasted) is below this' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l highest-wasted-bytes -d '--ci: fail when more bytes than this are wasted (`1000`, `20kB`, `20MB`, `1.5MiB`)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l highest-user-wasted-percent -d '--ci: fail when the wasted share of the image\'s bytes (0..1) is above this' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l sbom -d 'Print the image\'s SBOM (`push --sbom`) instead: `spdx` (the default) or `cyclonedx`' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l json -d 'Print one JSON object instead of text'
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l ci -d 'Check the thresholds below: exit 1 when one fails (without --ci they are ignored)'
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l provenance -d 'Print the image\'s SLSA provenance (`push --provenance`) instead'
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -s f -l file -d 'The Dockerfile (default: CONTEXT/Dockerfile)' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l lockfile -d 'The lock file (default: regbuild.lock beside the Dockerfile)' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l platform -d 'Only pin these platforms of multi-platform bases (comma-separated; default: all)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l build-arg -d 'Build argument `KEY=VALUE` (repeatable; `KEY` alone takes it from the environment): bases named through ARG resolve as `push` resolves them' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l target -d 'Pin the images this stage and the stages it needs name, as `push --target` builds it (default: the last stage)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l update -d 'Re-resolve every base, not only those the lock file lacks'
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand lock" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -s f -l file -d 'The Dockerfile whose lock file is checked (default ./Dockerfile)' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l lockfile -d 'The lock file to check (default: regbuild.lock beside the Dockerfile)' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l workspace -d 'The workspace file for --all' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l json -d 'One JSON object: {"bases": [{"image","reference","pinned","current","moved"}], "moved": N}'
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l all -d 'Check every image of the workspace (regbuild.toml)'
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand outdated" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l base -d 'The new base' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l old-base -d 'The base IMAGE was built on (default: its org.opencontainers.image.base.* annotations)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -s t -l tag -d 'Where to push the result (repeatable)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l json -d 'Print one JSON object (the shape of `push --json`) instead of text'
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l dry-run -d 'Print the plan and write nothing'
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand rebase" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l older-than -d 'Remove what was not used for longer than this (`7d`, `36h`, `90m`). Default `7d` unless --keep-storage is given' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l keep-storage -d 'Keep at most this much (`10GB`, `512MiB`), the most recently used first' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l all -d 'Remove everything, the per-layer records included'
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l dry-run -d 'Say what would be removed; remove nothing'
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l json -d 'Print the report as JSON on stdout'
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand prune" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l out -d 'Where: `reference/`, `man/` and `completions/` are written under it' -r -F
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l jobs -d 'Concurrent registry operations for the whole run' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l insecure-registry -d 'Reach this registry (`host` or `host:port`) over plain HTTP. Loopback registries always are' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l retries -d 'Attempts per request for transient failures (408, 429, 5xx, connection errors)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l deadline -d 'Give up (exit 1) when the run takes longer than this many seconds' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l chunk-threshold -d 'Blobs larger than this are uploaded in resumable chunks (`64MiB`, `1GB`, bytes)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l chunk-size -d 'The chunk size for those uploads (raised to the registry\'s minimum)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l upload-strategy -d 'How blobs are sent: `auto` (known hosts get their documented method, refusals are learned), `stream` (one PATCH), `monolithic` (one PUT) or `chunked` (PATCH chunks)' -r
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l no-progress -d 'No progress output on stderr'
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -l no-upload-fallback -d 'Take a registry\'s first refusal of an upload method (or a mount) as final instead of falling back to another method'
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -s v -l verbose -d 'More logging on stderr (repeat for more)'
complete -c regbuild -n "__fish_regbuild_using_subcommand gen-docs" -s h -l help -d 'Print help'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "promote" -d 'Copy an image or index, with its referrers, from SRC to DST (mounts on one registry)'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "push" -d 'Build a Dockerfile (RUN in a rootless sandbox, no daemon) and push the image straight to the registry'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "inspect" -d 'Per-layer sizes, file counts, wasted bytes and setuid files of an image; `--ci` gates'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "lock" -d 'Pin every base of a Dockerfile by digest in regbuild.lock'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "outdated" -d 'Report bases whose tags moved since they were pinned (exit 1 when one did)'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "rebase" -d 'Move an image onto a new base without rebuilding (layers mounted, nothing re-uploaded)'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "prune" -d 'Free the local cache: unpacked layers, RUN layers and cache mounts unused for a while'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "gen-docs" -d 'Write the CLI reference (Markdown), man pages and shell completions under OUT'
complete -c regbuild -n "__fish_regbuild_using_subcommand help; and not __fish_seen_subcommand_from promote push inspect lock outdated rebase prune gen-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
