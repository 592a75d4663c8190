use sozu_proto::request::RequestType as R;
use sozu_proto::*;
use sozu_state::*;
use std::net::SocketAddr;
use std::time::Instant;
fn main() {
    let mut s = ConfigState::new();
    let listener: SocketAddress = SocketAddr::from(([127, 0, 0, 1], 8080)).into();
    s.dispatch(&Request::from(R::AddHttpListener(Box::new(HttpListenerConfig {
        address: listener,
        sticky_name: "SOZUBALANCEID".into(),
        active: true,
        ..Default::default()
    }))))
    .unwrap();
    for i in 0..10000usize {
        let id = format!("cluster-{i}");
        let backend = |b: u16| {
            Request::from(R::AddBackend(AddBackend {
                cluster_id: id.clone(),
                backend_id: format!("{id}-{b}"),
                address: SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 8000 + b)).into(),
                load_balancing_parameters: Some(LoadBalancingParams { weight: 100 }),
                ..Default::default()
            }))
        };
        for r in [
            R::AddCluster(Box::new(Cluster { cluster_id: id.clone(), load_balancing: 3, ..Default::default() })).into(),
            R::AddHttpFrontend(Box::new(RequestHttpFrontend {
                cluster_id: Some(id.clone()),
                address: listener,
                hostname: format!("host-{i}.example.com"),
                path: PathRule { kind: 0, value: "/".into() },
                position: 2,
                ..Default::default()
            }))
            .into(),
            backend(0),
            backend(1),
        ] {
            s.dispatch(&r).unwrap();
        }
    }
    let mut bytes = Vec::new();
    save_state(&mut bytes, &s).unwrap();
    if std::env::args().nth(1).as_deref() == Some("dump") {
        std::fs::write("/tmp/st/10k.state", &bytes).unwrap();
    }
    for _ in 0..3 {
        let t = Instant::now();
        let p: Vec<WorkerRequest> =
            bytes.split(|b| *b == 0).filter(|r| !r.is_empty()).map(|r| serde_json::from_slice(r).unwrap()).collect();
        let floor = t.elapsed();
        drop(p);
        let t = Instant::now();
        let mut n = 0;
        let st = load_each(&ConfigState::new(), &bytes[..], 1 << 20, |_| n += 1).unwrap();
        let each = t.elapsed();
        drop(st);
        let t = Instant::now();
        let l = load(&ConfigState::new(), &bytes[..], 1 << 20).unwrap();
        let full = t.elapsed();
        drop(l);
        // parse + dispatch only
        let t = Instant::now();
        let mut st = ConfigState::new();
        for r in bytes.split(|b| *b == 0).filter(|r| !r.is_empty()).skip(1) {
            let w: WorkerRequest = serde_json::from_slice(r).unwrap();
            st.dispatch_owned(w.content).unwrap();
        }
        let pd = t.elapsed();
        drop(st);
        println!("floor {:?} load_each {:?} load {:?} parse+dispatch {:?}", floor, each, full, pd);
    }
}
