//! A Redis Cluster of a test's own on loopback: `redis-server --cluster-enabled yes` nodes on
//! free ports, joined by `redis-cli --cluster create`, killed when dropped.

#![allow(clippy::expect_used, clippy::panic, reason = "test support: a cluster that misbehaves fails the test, saying how")]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{is_primary, query, unavailable, within_a_minute};

/// One node: its port (its cluster bus is the port + 10000) and its process.
struct Node {
    port: u16,
    child: Option<Child>,
}

pub struct TestCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// A port that is free, and whose cluster bus port (+ 10000) is free too.
fn free_node_port() -> u16 {
    loop {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else { continue };
        let Ok(port) = listener.local_addr().map(|a| a.port()) else { continue };
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl TestCluster {
    /// `primaries` primaries with `replicas_each` replicas each (append-only, fsync every
    /// second); `None` (after saying why) without `redis-server` and `redis-cli`, outside CI.
    pub fn start(primaries: usize, replicas_each: usize) -> Option<Self> {
        let installed = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        if !installed("redis-server") || !installed("redis-cli") {
            return unavailable("redis-server and redis-cli are not installed");
        }
        let mut cluster = Self { nodes: Vec::new(), dir: tempfile::tempdir().ok()? };
        for _ in 0..primaries * (1 + replicas_each) {
            let port = free_node_port();
            cluster.nodes.push(Node { port, child: None });
            cluster.restart(port);
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas_each.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .ok()?;
        assert!(created.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&created.stderr));
        within_a_minute("every node sees the cluster ok", || {
            cluster
                .nodes
                .iter()
                .all(|n| query::<String>(n.port, redis::cmd("CLUSTER").arg("INFO")).is_ok_and(|info| info.contains("cluster_state:ok")))
        });
        Some(cluster)
    }

    /// The seed nodes, as `store.redis_cluster` takes them.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The port of the primary that holds `slot` now, as the nodes that answer see it.
    pub fn primary_of(&self, slot: u16) -> Option<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).find_map(|n| {
            let slots: redis::Value = query(n.port, redis::cmd("CLUSTER").arg("SLOTS")).ok()?;
            let redis::Value::Array(ranges) = slots else { return None };
            ranges.iter().find_map(|range| {
                let redis::Value::Array(range) = range else { return None };
                let (redis::Value::Int(from), redis::Value::Int(to), redis::Value::Array(primary)) = (&range[0], &range[1], &range[2])
                else {
                    return None;
                };
                let port = match primary.get(1) {
                    Some(redis::Value::Int(port)) => u16::try_from(*port).ok(),
                    _ => None,
                };
                (i64::from(slot) >= *from && i64::from(slot) <= *to).then_some(port).flatten()
            })
        })
    }

    /// The slot `key` hashes to.
    pub fn slot_of(&self, key: &str) -> u16 {
        self.nodes.iter().find_map(|n| query(n.port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).ok()).expect("a node answers")
    }

    /// The ports of the nodes that answer as primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some() && is_primary(n.port)).map(|n| n.port).collect()
    }

    /// Moves `slot` to the primary on `to`, as `redis-cli --cluster reshard` does it: the slot
    /// importing on `to` and migrating on its holder, its keys `MIGRATE`d a hundred at a time
    /// (writes go on meanwhile, redirected by `ASK`), then the slot assigned to `to` everywhere.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let from = self.primary_of(slot).expect("the slot has a primary");
        assert_ne!(from, to, "the slot is already there");
        let id = |port: u16| query::<String>(port, redis::cmd("CLUSTER").arg("MYID")).expect("a node id");
        let (from_id, to_id) = (id(from), id(to));
        let setslot = |port: u16, state: &str, node: &str| {
            query::<()>(port, redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(state).arg(node)).expect("CLUSTER SETSLOT");
        };
        setslot(to, "IMPORTING", &from_id);
        setslot(from, "MIGRATING", &to_id);
        loop {
            let keys: Vec<Vec<u8>> =
                query(from, redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(100)).expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate.arg("127.0.0.1").arg(to).arg("").arg(0).arg(5000).arg("KEYS").arg(keys);
            query::<redis::Value>(from, &migrate).expect("MIGRATE");
        }
        setslot(to, "NODE", &to_id);
        setslot(from, "NODE", &to_id);
        for port in self.primaries() {
            setslot(port, "NODE", &to_id);
        }
    }

    /// Waits (up to 60 s) until the primary on `port` has a replica in sync.
    pub fn until_replicated(&self, port: u16) {
        within_a_minute("the primary has a replica in sync", || {
            query::<String>(port, redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| info.lines().any(|l| l.starts_with("slave") && l.contains("state=online")))
        });
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port)
            && let Some(mut child) = node.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` (again), with its data and cluster configuration.
    pub fn restart(&mut self, port: u16) {
        self.kill(port);
        let dir = self.dir.path().join(port.to_string());
        let _ = std::fs::create_dir_all(&dir);
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--appendonly", "yes", "--appendfsync", "everysec"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.child = child;
        }
        for _ in 0..100 {
            if query::<String>(port, &redis::cmd("PING")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not start");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
