//! An HTTP client for tests, with the process-wide rustls crypto provider installed.

/// A reqwest client; installs the ring provider once (kausal's choice throughout).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}
