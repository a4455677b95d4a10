//! A small Chrome DevTools Protocol driver for browser tests: starts the system's headless
//! Chromium (Debian `chromium`), opens a page and speaks CDP over the page's WebSocket. The
//! WebSocket client is the minimum the protocol needs (masked text frames out, possibly
//! fragmented frames in), written on std so that tests need no extra crates.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    pub port: u16,
}

impl Browser {
    /// Start headless Chromium with a throw-away profile.
    pub fn start() -> Result<Browser> {
        let exe = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|c| Command::new("which").arg(c).output().map(|o| o.status.success()).unwrap_or(false))
            .context("no chromium on PATH: install Debian's `chromium` (scripts/test does)")?;
        let profile = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1600,1000",
                "--hide-scrollbars",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromium")?;
        let browser = Browser { child, _profile: profile, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/json/version").is_err() {
            if Instant::now() > deadline {
                bail!("chromium did not open its debugging port {port} in 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(browser)
    }

    /// Open a new page at `url`.
    pub fn page(&self, url: &str) -> Result<Page> {
        let body = http(self.port, "PUT", &format!("/json/new?{url}"))?;
        let target: Value = serde_json::from_str(&body).with_context(|| format!("/json/new answered {body}"))?;
        let ws = target["webSocketDebuggerUrl"].as_str().context("webSocketDebuggerUrl")?.to_string();
        let mut page = Page { ws: WebSocket::connect(&ws)?, next_id: 0 };
        page.call("Page.enable", json!({}))?;
        page.call("Runtime.enable", json!({}))?;
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request to the debugging endpoint; the body of the answer.
fn http(port: u16, method: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?;
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    if !status.contains(" 200 ") {
        bail!("{method} {path}: {status}");
    }
    let mut body = vec![0u8; length.context("no Content-Length")?];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8(body)?)
}

pub struct Page {
    ws: WebSocket,
    next_id: u64,
}

impl Page {
    /// A CDP command; its `result`, or the protocol error as an error.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.ws.send(&json!({"id": id, "method": method, "params": params}).to_string())?;
        loop {
            let message: Value = serde_json::from_str(&self.ws.receive()?)?;
            if message["id"] == id {
                if let Some(e) = message.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(message["result"].clone());
            }
        }
    }

    /// Evaluate a JavaScript expression (promises awaited); its value.
    pub fn eval(&mut self, expression: &str) -> Result<Value> {
        let r = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}))?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{expression}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Poll `expression` until it is truthy; its value.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expression)?;
            let truthy = !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let html = self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''").unwrap_or_default();
                bail!("timed out waiting for `{expression}`; page text: {html}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn navigate(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({"url": url}))?;
        Ok(())
    }

    /// Save a PNG screenshot of the viewport.
    pub fn screenshot(&mut self, path: &Path) -> Result<PathBuf> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = r["data"].as_str().context("screenshot data")?;
        std::fs::write(path, base64_decode(data)?)?;
        Ok(path.to_path_buf())
    }
}

struct WebSocket {
    stream: BufReader<TcpStream>,
}

impl WebSocket {
    fn connect(url: &str) -> Result<WebSocket> {
        let rest = url.strip_prefix("ws://").context("ws:// url")?;
        let (host, path) = rest.split_once('/').context("ws url path")?;
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2F1c2FsLXRlc3RzLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.contains(" 101 ") {
            bail!("websocket handshake refused: {status}");
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Ok(WebSocket { stream: reader })
    }

    fn send(&mut self, text: &str) -> Result<()> {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65_536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x4b, 0x61, 0x75, 0x73];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame)?;
        Ok(())
    }

    /// The next text message (fragments joined; control frames skipped).
    fn receive(&mut self) -> Result<String> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head)?;
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b)?;
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b)?;
                    usize::try_from(u64::from_be_bytes(b))?
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload)?;
            match opcode {
                0x8 => bail!("the browser closed the websocket"),
                0x9 | 0xA => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return Ok(String::from_utf8(message)?);
            }
        }
    }
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let value = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {}", c as char),
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Ok(out)
}
