//! The reference `bench/load.sh` measures promptreg against: a bare axum
//! server that answers `GET /` with a short body, built with the same axum,
//! tokio, allocator and release profile as promptreg, and no middleware.
//! What promptreg serves less than this is what promptreg itself costs.
//!
//! `cargo run --release --example bare_axum -- 127.0.0.1:18200`

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18200".to_owned());
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    axum::serve(listener, app).await
}
