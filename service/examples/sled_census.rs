//! Where a sled store's bytes go: every tree's records, with their key and value bytes, against
//! the files on disk — the live bytes, and the disk as a multiple of them. Run it on a store no
//! idlinkd has open (e.g. one `recalc_throughput` loaded):
//!
//!     cargo run --release -p idlink-service --example sled_census -- DATA_DIR
//!
//! Prints a table, largest tree first, then one JSON line.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measuring tool fails loudly")]

use std::path::Path;

/// The size of every file under `dir`.
fn bytes_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_on_disk(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: sled_census DATA_DIR");
    let dir = Path::new(&dir);
    let on_disk = bytes_on_disk(dir);
    let db = idlink_service::store::sled::raw_config(dir, idlink_service::store::sled::DEFAULT_CACHE_BYTES).open().unwrap();
    let mut trees = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        let (mut records, mut keys, mut values, mut largest) = (0u64, 0u64, 0u64, 0usize);
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            records += 1;
            keys += key.len() as u64;
            values += value.len() as u64;
            largest = largest.max(value.len());
        }
        trees.push((String::from_utf8_lossy(&name).into_owned(), records, keys, values, largest));
    }
    trees.sort_by_key(|t| std::cmp::Reverse(t.2 + t.3));
    let live: u64 = trees.iter().map(|t| t.2 + t.3).sum();
    println!("| tree | records | key bytes | value bytes | share of live | bytes per record | largest value |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, records, keys, values, largest) in &trees {
        let share = (keys + values) as f64 / live.max(1) as f64;
        let per = (keys + values) as f64 / (*records).max(1) as f64;
        println!("| {name} | {records} | {keys} | {values} | {:.1}% | {per:.0} | {largest} |", share * 100.0);
    }
    println!("live {live} bytes; on disk {on_disk} bytes = {:.2}x live", on_disk as f64 / live.max(1) as f64);
    let json: Vec<serde_json::Value> = trees
        .iter()
        .map(|(name, records, keys, values, _)| serde_json::json!({"tree": name, "records": records, "key_bytes": keys, "value_bytes": values}))
        .collect();
    println!(
        "{}",
        serde_json::json!({"live_bytes": live, "bytes_on_disk": on_disk, "disk_per_live": on_disk as f64 / live.max(1) as f64, "trees": json})
    );
}
