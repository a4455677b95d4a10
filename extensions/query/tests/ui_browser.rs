//! The web UI in a real browser: headless Chromium (Debian `chromium`) driven over the Chrome
//! DevTools Protocol opens the UI served by the query router over a store holding a
//! Deployment rollout, searches the Deployment, opens its trace, clicks it, sees its diff,
//! switches the view, and saves a screenshot (`<target>/tmp/ui-*.png`).

mod support {
    pub mod cdp;
}
#[path = "support/rollout.rs"]
mod rollout;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use kausal_core::Nanos;
use kausal_extension_query::{router, QueryOptions};
use kausal_store::{Store, StoreOptions};
use support::cdp::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_open_click_and_read_the_diff() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as Nanos;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    store.write(&rollout::rollout(now - 40 * rollout::MINUTE))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router(store, QueryOptions::default())).await });

    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tokio::task::spawn_blocking(move || -> Result<()> {
        let browser = Browser::start()?;
        let mut page = browser.page(&format!("{base}/"))?;
        let t = Duration::from_secs(20);
        page.wait_for("document.readyState === 'complete' && !!document.getElementById('q-name')", t)?;
        // Search like a user: resource and name, then submit.
        page.eval(
            "document.getElementById('q-resource').value = 'deployments';
             document.getElementById('q-name').value = 'demo';
             document.getElementById('q-lookback').value = '6h';
             document.getElementById('q-go').click(); true",
        )?;
        page.wait_for("document.querySelectorAll('.result').length === 1", t)?;
        page.eval("document.querySelector('.result').click(); true")?;
        let rows = page.wait_for("document.querySelectorAll('.row[data-span]').length >= 7 && document.querySelectorAll('.row[data-span]').length", t)?;
        assert_eq!(rows, 7, "Deployment, 2 ReplicaSets, 4 Pods");
        assert!(page.eval("location.pathname")?.as_str().unwrap_or_default().starts_with("/trace/ff20000003e1e3e7"));
        // Markers: one per activity on the Deployment's bar.
        assert_eq!(page.eval("document.querySelector('.row.root').querySelectorAll('.mk').length")?, 4);
        // Click the Deployment: its detail shows the diff, old and new values colour-coded.
        page.eval("document.querySelector('.row.root').click(); true")?;
        let new = page.wait_for("(document.querySelector('#detail .diff-line .new') || {}).textContent", t)?;
        assert_eq!(new, "\"nginx:1.26\"");
        assert_eq!(page.eval("document.querySelector('#detail .diff-line .old').textContent")?, "\"nginx:1.25\"");
        assert!(page.eval("location.search")?.as_str().unwrap_or_default().contains("span="), "selection is in the URL");
        page.screenshot(&shots.join("ui-trace.png"))?;

        // One click switches the view; the trace id's mode digits change, the rest stays.
        page.eval("document.querySelector('#views a[data-mode=\"tree\"]').click(); true")?;
        page.wait_for("location.pathname.startsWith('/trace/ff00000003e1e3e7') && document.querySelectorAll('.row.act').length >= 10", t)?;
        page.eval("document.querySelector('#scopes a[data-mode=\"tree [object]\"]').click(); true")?;
        page.wait_for("location.pathname.startsWith('/trace/ff00000000e1e3e7') && document.querySelectorAll('.row.obj').length === 1", t)?;
        page.screenshot(&shots.join("ui-tree-object.png"))?;

        // A deep link opens the same view in a fresh page.
        let deep = page.eval("location.href")?.as_str().unwrap_or_default().to_string();
        let mut fresh = browser.page(&deep)?;
        fresh.wait_for("document.querySelectorAll('.row.obj').length === 1", t)?;

        // The analysis tab draws a histogram.
        fresh.navigate(&format!(
            "{base}/search?tab=analysis&from={}&to={}&lookback=6h",
            "resource%3Ddeployments%2Cdiff%3Dnginx%3A1.26",
            "resource%3Dpods%2Csubresource%3Dbinding"
        ))?;
        fresh.wait_for("document.querySelectorAll('#hist .b').length >= 1", t)?;
        fresh.screenshot(&shots.join("ui-analysis.png"))?;
        Ok(())
    })
    .await??;
    Ok(())
}
