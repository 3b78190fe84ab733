//! A server's response as langur's upstream HTTP/1.1 client meets it: any bytes, delivered in
//! pieces the input chooses, after a GET or a HEAD. Never a panic; a body that ends cleanly has
//! the length its head announced; only a clean end leaves the connection reusable.
//!
//! Input: byte 0 bit 0 = HEAD; byte 1 = how many piece sizes follow; then the piece sizes; then
//! the response bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let head = data[0] & 1 == 1;
    let k = usize::from(data[1]).min(data.len() - 2);
    let (pieces, response) = data[2..].split_at(k);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        if let Ok(outcome) = langur::upstream::h1::fuzzing::exchange(response, pieces, head).await {
            langur::upstream::h1::fuzzing::check(&outcome, head);
        }
    });
});
