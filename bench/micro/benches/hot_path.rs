//! Micro-benchmarks of the decision code on the request path: routing and balancer picks.
//! `cd bench/micro && cargo bench --bench hot_path` (a package of its own, so criterion stays
//! out of the main crate's test build); numbers are recorded in docs/performance.md.

use criterion::{criterion_group, criterion_main, Criterion};
use langur::balancer::{self, Candidates, PickContext};
use langur::config::{BalanceMethod, HashOn};
use langur::matching::{parse_prefix, HostPattern, Input, RequestMatch};
use langur::router::Router;
use std::hint::black_box;

struct Pool {
    weights: Vec<u32>,
    in_flight: Vec<usize>,
}

impl Candidates for Pool {
    fn len(&self) -> usize {
        self.weights.len()
    }
    fn weight(&self, i: usize) -> u32 {
        self.weights[i]
    }
    fn in_flight(&self, i: usize) -> usize {
        self.in_flight[i]
    }
    fn usable(&self, _: usize) -> bool {
        true
    }
}

fn router(c: &mut Criterion) {
    let reference = Router::new(&[
        (vec!["/*.php".into()], 0),
        (
            vec![
                "/*.jpg".into(),
                "/*.png".into(),
                "/*.css".into(),
                "/*.js".into(),
                "/*.html".into(),
            ],
            1,
        ),
    ])
    .unwrap();
    c.bench_function("route/reference/static-hit", |b| {
        b.iter(|| reference.route(black_box("/assets/img/logo.png")))
    });
    c.bench_function("route/reference/miss", |b| {
        b.iter(|| reference.route(black_box("/api/v1/users/42")))
    });
    let many: Vec<(Vec<String>, usize)> = (0..50)
        .map(|i| (vec![format!("^/service{i}/")], i))
        .collect();
    let many = Router::new(&many).unwrap();
    c.bench_function("route/50-prefixes/last", |b| {
        b.iter(|| many.route(black_box("/service49/x/y")))
    });
    // Virtual hosts: N sites of 5 routes each (four path prefixes and a catch-all), plus a
    // wildcard site; the request is for the last site's last route, so a scan would be worst.
    for sites in [10usize, 1000] {
        let mut routes = Vec::new();
        let mut matchers = Vec::new();
        for s in 0..sites {
            for (r, prefix) in ["/api", "/static", "/admin", "/img", "/"]
                .iter()
                .enumerate()
            {
                routes.push((Vec::new(), s * 5 + r));
                matchers.push(RequestMatch {
                    hosts: vec![
                        HostPattern::parse(&format!("site{s}.example")).unwrap(),
                        HostPattern::parse(&format!("www.site{s}.example")).unwrap(),
                    ],
                    path_prefix: Some(parse_prefix(prefix).unwrap()),
                    ..Default::default()
                });
            }
        }
        routes.push((Vec::new(), usize::MAX));
        matchers.push(RequestMatch {
            hosts: vec![HostPattern::parse("*.wild.example").unwrap()],
            ..Default::default()
        });
        let router = Router::with_matchers(&routes, matchers).unwrap();
        let headers = http::HeaderMap::new();
        let host = format!("www.site{}.example", sites - 1);
        let method = http::Method::GET;
        c.bench_function(&format!("route/{sites}-hosts/last-site-catch-all"), |b| {
            b.iter(|| {
                router.route_request(&Input {
                    host: black_box(&host),
                    path: black_box("/about/team"),
                    query: None,
                    method: &method,
                    headers: &headers,
                    source: std::net::Ipv4Addr::LOCALHOST.into(),
                    client_cert: None,
                })
            })
        });
    }
}

fn balancers(c: &mut Criterion) {
    for n in [3usize, 100] {
        let pool = Pool {
            weights: (0..n).map(|i| 1 + (i % 3) as u32).collect(),
            in_flight: (0..n).map(|i| i % 7).collect(),
        };
        let named: Vec<(String, u32)> = pool
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("10.0.{}.{}:80", i / 250, i % 250), *w))
            .collect();
        for method in [
            BalanceMethod::RoundRobin,
            BalanceMethod::LeastConnections,
            BalanceMethod::FirstAlive,
            BalanceMethod::Naive,
            BalanceMethod::Random,
            BalanceMethod::P2c,
            BalanceMethod::PeakEwma,
            BalanceMethod::Hash(HashOn::Source),
        ] {
            let bal = balancer::build(&method, &named, 7, Some(1.25));
            let ctx = PickContext {
                client_hint: 40_123,
                hash: Some(0x1234_5678_9abc_def0),
            };
            c.bench_function(&format!("pick/{}/{n}", method.name()), |b| {
                b.iter(|| bal.pick(black_box(&pool), black_box(&ctx)))
            });
        }
    }
}

fn cache_lookup(c: &mut Criterion) {
    use langur::cache::{primary_key, Cache, Object};
    let cache = Cache::new(langur::config::CacheConfig::default());
    let none = http::HeaderMap::new();
    for i in 0..10_000 {
        let obj = Object::new(
            http::StatusCode::OK,
            http::HeaderMap::new(),
            bytes::Bytes::from(vec![b'x'; 1024]),
            0,
            3600,
            0,
            0,
            false,
            false,
        );
        cache.insert(
            &primary_key("http", "example.com", &format!("/item/{i}")),
            &none,
            obj,
        );
    }
    let mut g = c.benchmark_group("cache");
    g.bench_function("key+lookup hit (10k entries)", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 7) % 10_000;
            let k = primary_key("http", "example.com", &format!("/item/{i}"));
            std::hint::black_box(cache.lookup(&k, &none).is_some())
        })
    });
    g.bench_function("lookup miss", |b| {
        b.iter(|| std::hint::black_box(cache.lookup("http://example.com/none", &none).is_none()))
    });
    g.finish();
}

criterion_group!(benches, router, balancers, cache_lookup);
criterion_main!(benches);
