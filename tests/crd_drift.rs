//! `crds/` must hold exactly what the code generates; run `make crds` after changing `src/crd/`.

use std::path::Path;

#[test]
fn committed_crds_match_the_generated_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let generated = platform_operator::crd::crd_files().expect("CRDs render");
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    committed.sort();
    let mut expected: Vec<String> = generated.iter().map(|(name, _)| name.clone()).collect();
    expected.sort();
    assert_eq!(
        committed, expected,
        "crds/ has other files than the generated ones: run `make crds`"
    );
    for (name, yaml) in generated {
        let on_disk = std::fs::read_to_string(dir.join(&name)).expect("readable CRD file");
        assert!(
            on_disk == yaml,
            "crds/{name} differs from the generated CRD: run `make crds`"
        );
    }
}

#[test]
fn the_crds_command_prints_the_committed_files() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_platform-operator"))
        .arg("crds")
        .output()
        .expect("the binary runs");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let committed: String = ["platforms.pmp.dev.yaml", "platformgroups.pmp.dev.yaml"]
        .iter()
        .map(|name| std::fs::read_to_string(dir.join(name)).expect("committed CRD"))
        .collect();
    assert_eq!(printed, committed);
}
