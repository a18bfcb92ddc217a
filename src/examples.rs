//! The example tenant and manifests of `examples/`, built into the binary for `mfactl demo` and
//! `mfactl init --demo`. Pure data.

pub const DIRECTORY: &str = include_str!("../examples/directory.yaml");
pub const MANIFESTS: [(&str, &str); 4] = [
    (
        "examples/manifests/contractors.yaml",
        include_str!("../examples/manifests/contractors.yaml"),
    ),
    (
        "examples/manifests/offboarding-2026-11.yaml",
        include_str!("../examples/manifests/offboarding-2026-11.yaml"),
    ),
    (
        "examples/manifests/stolen-laptop-carol.yaml",
        include_str!("../examples/manifests/stolen-laptop-carol.yaml"),
    ),
    (
        "examples/manifests/tenant-wide-revocation.yaml",
        include_str!("../examples/manifests/tenant-wide-revocation.yaml"),
    ),
];
pub const EXAMPLE_ADMIN: &str = "erin@contoso.example";
pub const GLOBAL_ADMIN: &str = "gary@contoso.example";
