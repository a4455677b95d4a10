//! Every example configuration in `config/` is valid for the built binary.

use anyhow::Result;
use kausal_tests::process::run_to_end;

#[test]
fn every_example_configuration_validates() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let (code, out, err) = run_to_end(&dir, &["validate", "--config", path.to_str().unwrap_or_default()])?;
        assert_eq!(code, 0, "{}: {out}{err}", path.display());
        checked += 1;
    }
    assert!(checked >= 1, "no example configurations found in {}", dir.display());
    Ok(())
}
