//! The lock scripts of known client libraries, by SHA1, from
//! `lock-scripts.tsv` (kept sorted: the registry binary-searches it). What each
//! library's scripts do and how their replies read was taken from the library
//! sources; the texts themselves are learned from clients at run time.

mod shapes;

use self::shapes::*;
use super::{Convention, DataWhen, Holders, Kind, ScriptSpec, TtlMode, spec};
use crate::config::{ScriptFailure as Failure, ScriptSuccess as Success};

use Convention as C;
use Kind as K;

/// Lock scripts of known client libraries, by SHA1.
pub static KNOWN: &[(&str, ScriptSpec)] = &[
    (
        "00583931c4e4d483f6233879c133c71ed5393f9d",
        spec(K::Release, C::Count, None, "redsync release"),
    ),
    (
        "009e6775acf362b837433e2ab6f2b772e391079e",
        spec(K::Extend, C::OkErr, Some(2), "redsync v1 extend"),
    ),
    ("02718596825c5bf6c57af391b4dc01a6d2d9d88a", srm_release()),
    (
        "0bd1010c98f1ddd70a6024fd374489a8ea3d2c12",
        ScriptSpec {
            holders: Holders::Semaphore {
                limit_arg: None,
                permits_arg: Some(1),
            },
            ..with_token(
                spec(
                    K::Release,
                    C::Count,
                    None,
                    "redis-semaphore MultiSemaphore release",
                ),
                2,
            )
        },
    ),
    (
        "0f0f23b9048b36752b5be114f357ba083449f908",
        spec(K::Release, C::Count, None, "node-redlock 4.2 release"),
    ),
    (
        "10c1c2e05e7c48aa5824d227b8c51abcde87b18e",
        semaphore(K::Acquire, true, "redis-semaphore MultiSemaphore acquire"),
    ),
    (
        "149c5a8bf18676fd99e9e6e24923bd64d9b62f94",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson RLock acquire",
        ),
    ),
    (
        "175897a4e379e99e79a54937be09226f76cdcfe5",
        spec(
            K::Acquire,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry acquire",
        ),
    ),
    (
        "17a49af0c4b1a9034503fa84f3570f5ca76c4cbf",
        spec(K::Extend, C::OneZero, Some(2), "rslock extend"),
    ),
    (
        "194f3902b2dd08557818d09fc2e7682d91480e53",
        spec(K::Release, C::Count, None, "ShedLock / redis.io release"),
    ),
    (
        "1b77b94aa78451d55dfa97e18819bfbfc596cb5b",
        with_token(
            spec(
                K::Acquire,
                C::KeysZero,
                Some(3),
                "@sesamecare-oss/redlock 1.x acquire",
            ),
            2,
        ),
    ),
    (
        "1cac51482acf5858da00f6d685d68f886cd6b6b2",
        spec(K::Extend, C::OneZero, Some(2), "redis-py reacquire"),
    ),
    (
        "1d48b4c6fea2cdadc46b3346de5c2eaf121c7bb3",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 4.1 extend"),
    ),
    (
        "20b5c3728736e2367b496c16390f9df56916a76f",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release fallback",
        ),
    ),
    (
        "2327bcdc5edb5b8687f6d19b5e1f42b815ebddab",
        semaphore(K::Extend, true, "redis-semaphore MultiSemaphore refresh"),
    ),
    (
        "241e4ca540a1cc4ec1f32d9eb9f879e607d7e6e5",
        spec(
            K::Release,
            C::Declared(Success::OkOrPositive, Failure::Error),
            None,
            "aioredlock unset_lock",
        ),
    ),
    (
        "307044d49c8f033fbb885e9e0f1b7fe9e0e60675",
        spec(K::Extend, C::OneZero, Some(2), "pottery extend"),
    ),
    (
        "356d97191f2b63031781ccc0e8e82f02e1995a90",
        spec(K::Release, C::OneNil, None, "Spring SPIN_LOCK release"),
    ),
    (
        "3b6bdbbe16f821f49177b16c7707f331f015a779",
        symfony(K::Query, 2, None, "Symfony Lock RedisStore exists"),
    ),
    (
        "43ebdb49120d170e08af560cb4e46e36f8585936",
        semaphore(K::Acquire, false, "redis-semaphore Semaphore acquire"),
    ),
    (
        "4a484ac024e9b025224cd9f8e1d59dbf3c15d00d",
        ScriptSpec {
            ttl_mode: TtlMode::Add,
            ..spec(K::Extend, C::OneZero, Some(2), "redis-py extend")
        },
    ),
    (
        "4d7192f70618a620282e427698f9cde890151e58",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release fallback",
        ),
    ),
    (
        "4e92fdc63815b3a0a2dd1c1df3694de73607c88d",
        spec(K::Release, C::Count, None, "redlock-py unlock"),
    ),
    (
        "514d8d1b08387624661da2a9098d3949b633eb3a",
        batch(spec(
            K::Acquire,
            C::BatchCode,
            None,
            "redlock-universal batch acquire",
        )),
    ),
    (
        "517e7ed95f00c0c4a209c6a7afcc6ab797d30b85",
        spec(K::Release, C::Count, None, "node-redlock 4.0 release"),
    ),
    (
        "53692746b44cae854b8dfa32b177218bbe40baee",
        spec(K::Extend, C::OneZero, Some(2), "redsync extend"),
    ),
    (
        "544c68b7ffd46e5d7ccc58a27204557efba43310",
        spec(K::Release, C::Count, None, "redlock-rs unlock"),
    ),
    (
        "5688a2541c9edd77746bcd2385e65ff3639a664f",
        spec(
            K::Acquire,
            C::OneZero,
            Some(2),
            "redis-py 2.10 LuaLock acquire",
        ),
    ),
    (
        "594683e49a64ebaf975caf5f8079a1d097c438f1",
        spec(
            K::Extend,
            C::OneZero,
            Some(2),
            "redis-semaphore Mutex refresh",
        ),
    ),
    (
        "5a22d7e8431313862816d4416b5e46dd70fc340d",
        spec(K::Extend, C::OkNil, Some(2), "bsm/redislock refresh"),
    ),
    (
        "605e338249a7a1d40df83b04f7658354f883b41b",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson RLock forceUnlock",
        ),
    ),
    (
        "63be12a3515941092212f15c08327d60916de9fa",
        symfony(
            K::Extend,
            2,
            Some(3),
            "Symfony Lock RedisStore putOffExpiration",
        ),
    ),
    (
        "647c65a442733a1aa440f99908d249d13b4d6c4a",
        spec(K::Release, C::Count, None, "redis.io release"),
    ),
    (
        "6484da7d58920897fdc22b7f9afd1a3d47524ea8",
        spec(K::Query, C::PttlOrMinus3, None, "bsm/redislock TTL"),
    ),
    (
        "66e1084c2d842a7e8c271925aae90219fac4e129",
        spec(K::Query, C::PttlOrNil, None, "bsm/redislock TTL"),
    ),
    (
        "67256370c2d1c87e2250898075542b1a7fa5b917",
        spec(K::Extend, C::OneZero, Some(2), "ShedLock extend"),
    ),
    (
        "67aebbcba76d9674162e8906de1f669866f48e07",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release",
        ),
    ),
    (
        "6866459238a13a701d42f4971f12d9f3a50e2442",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson RLock release",
        ),
    ),
    (
        "6a3d31570dc6f4b0bd32bcdc8e75667747c6f635",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson watchdog renewal",
        ),
    ),
    (
        "6d2bc6d16248df19e144841297222544e3c7800a",
        spec(
            K::Acquire,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry acquire",
        ),
    ),
    (
        "6fdee501a3714553b74c0d67687b921b90b05d18",
        symfony(K::Acquire, 2, Some(3), "Symfony Lock RedisStore save"),
    ),
    (
        "7157921a7cc7cfba979acf6d63f073151df17d12",
        spec(K::Release, C::Count, None, "redis-semaphore Mutex release"),
    ),
    (
        "78d2ca48a6dc9ef6892059792a3a0c5237733d64",
        spec(K::Query, C::ValuePttl, None, "redlock-rb TTL"),
    ),
    (
        "7a71e9443a2a41539fb115a5a27d5a748a871aed",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release",
        ),
    ),
    (
        "80a1b5f2cfccec3b7119ba7721d2127682b691a7",
        spec(K::Acquire, C::OkNil, Some(3), "bsm/redislock obtain"),
    ),
    (
        "820e9778d2b6733e9ed771e4be90ae73a95a6f3b",
        with_token(
            spec(
                K::Extend,
                C::KeysZero,
                Some(3),
                "@sesamecare-oss/redlock 1.x extend",
            ),
            2,
        ),
    ),
    (
        "8426c8df41c64d8177dce3ecbbe9146ef3759cd2",
        spec(
            K::Acquire,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry acquire",
        ),
    ),
    (
        "862f31bf38e9b63ce28d6e9e5143551bb34ef981",
        spec(K::Acquire, C::OkNil, Some(2), "node-redlock 2-3 acquire"),
    ),
    (
        "879e0f7b8d83c3266d4e996627438c05dbda0b89",
        spec(
            K::Extend,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry renew",
        ),
    ),
    (
        "8e4905cee18e7c3188d10f2b8b170e403baed34f",
        spec(K::Release, C::Count, None, "redlock-rb unlock"),
    ),
    (
        "90da91872223f85eb1376a17e3c4df21ace8c54b",
        split(
            spec(K::Release, C::ZeroOne, None, "python-redis-lock release"),
            Some(PRL_UNLOCK_LOCK_PART),
            Some((PRL_SIGNAL, DataWhen::OnInt(0))),
        ),
    ),
    (
        "9470c810040e272ee6c579d8d4331aaf6332a7b1",
        spec(K::Release, C::OkNil, None, "bsm/redislock release"),
    ),
    (
        "963db4d9f0ccfdb859098be0b29f8b41dc02ed97",
        spec(K::Release, C::Count, None, "redlock-rb unlock"),
    ),
    (
        "96da70f7716f27d278a5218544df37fd8b0a5e4c",
        spec(K::Acquire, C::KeysZero, Some(2), "node-redlock 5 acquire"),
    ),
    (
        "994908155dadb1bed08a5af6dee7fedf956c4826",
        spec(
            K::Query,
            C::ValuePttlOrNil,
            None,
            "redlock-universal inspect",
        ),
    ),
    (
        "999a49a1d07671a8027165641001f5bad44608b3",
        semaphore(K::Extend, false, "redis-semaphore Semaphore refresh"),
    ),
    (
        "a2c2e4c111924caec00216d4881ed37a644435ce",
        ScriptSpec {
            ttl_in_seconds: true,
            ..spec(K::Extend, C::OneZero, Some(2), "node-redlock 0.2 extend")
        },
    ),
    (
        "a4aada0b36710970eedaaaeec4a6b7d8c78c4f80",
        spec(K::Release, C::Count, None, "pottery release"),
    ),
    (
        "a4e8783852e6b949f9ef3a97212805108459a890",
        ScriptSpec {
            ttl_mode: TtlMode::AddUnlessArg(3),
            ..spec(K::Extend, C::OneZero, Some(2), "redis-py extend")
        },
    ),
    (
        "a70f7f5087a0cb2c2c9ca50d1f64e234c2628f0c",
        symfony(K::Release, 1, None, "Symfony Lock RedisStore delete"),
    ),
    (
        "a7aba3bc5d6e99b3003da8b9d80a63b9f4092ecf",
        spec(
            K::Extend,
            C::OneZero,
            Some(2),
            "bsm/redislock refresh, node-redlock extend",
        ),
    ),
    (
        "a90bf4be8a6e440e3cc24540eb2f9ff1e16fbcc3",
        spec(K::AcquireOrExtend, C::OkNil, Some(2), "redlock-rb lock"),
    ),
    (
        "abdbb1413a25737fc4cfb9cf79ace1a22dad6ab3",
        symfony(K::Acquire, 2, Some(3), "Symfony Lock RedisStore save"),
    ),
    (
        "acaf90b4697bb48bb5f603e9e613a54df7536c70",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 4.0 extend"),
    ),
    (
        "aed6f382e410db8ba7926d4e5e9aab410bf2a78a",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 5 extend"),
    ),
    (
        "afbc8014508f92e446b56567e8ba600e811c1bd5",
        split(
            with_token(
                spec(K::Release, C::Count, None, "python-redis-lock reset"),
                0,
            ),
            Some(PRL_RESET_LOCK_PART),
            Some((PRL_SIGNAL, DataWhen::Always)),
        ),
    ),
    (
        "b121d3548d693116c3851b63befe947e49f28c7c",
        spec(
            K::Unsupported(PYTHON_REDIS_LOCK_RESET_ALL),
            C::Count,
            None,
            "python-redis-lock reset_all",
        ),
    ),
    (
        "b2dedc0ab01c17f9f20e3e6ddb62dcb6afbed0bd",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release fallback",
        ),
    ),
    (
        "b5745b5be27d9033eb5d3eb254df2faf502b88df",
        symfony(K::Acquire, 2, Some(3), "Symfony Lock RedisStore saveRead"),
    ),
    (
        "b6b55c439e02c6f52ffb8be7ec8c0d0ac816ea79",
        spec(
            K::Extend,
            C::OneZero,
            Some(2),
            "redsync extend-or-reacquire",
        ),
    ),
    (
        "b70c2384248f88e6b75b9f89241a180f856ad852",
        spec(K::Release, C::Count, None, "redis.io release (one line)"),
    ),
    (
        "ba015a80261b616e7a62d35df0b8e3edbe6c9414",
        spec(K::Extend, C::OneZero, Some(2), "pottery extend"),
    ),
    (
        "bd75051e9049411d4a96c0df196ac2667d38f481",
        spec(K::Release, C::Count, None, "redis.io release (SET page)"),
    ),
    (
        "c000e088bd4aca36ab429d3b7a16fc736f4cb6f1",
        spec(
            K::Extend,
            C::CodePttl,
            Some(3),
            "redlock-universal atomic extend",
        ),
    ),
    (
        "c1ae6c899d164de076f40ffe82eba8fb8e27af6c",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release",
        ),
    ),
    (
        "c3f8721cbb97f72bc19e972846bd7aaf91901658",
        spec(K::Release, C::Count, None, "redis-py release"),
    ),
    (
        "c75a9bf1538efcdb1f383acc3e273c5089d57e58",
        spec(
            K::Acquire,
            C::Declared(Success::Ok, Failure::Error),
            Some(2),
            "aioredlock set_lock",
        ),
    ),
    (
        "cd1ae9bb543136ebc0a80a277cd59a7cec83b296",
        spec(K::Query, C::ValuePttl, None, "redlock-rb TTL"),
    ),
    (
        "ce46f80993d5dac20dd066eb301a4e37994bdbed",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 4.2 extend"),
    ),
    (
        "ceb2b2062e40c51a2b3963fd078bc71f11bdc65c",
        spec(K::AcquireOrExtend, C::OkNil, Some(2), "redlock-rb lock"),
    ),
    (
        "cf0e94b2e9ffc7e04395cf88f7583fc309985910",
        spec(
            K::Release,
            C::Count,
            None,
            "bsm/redislock, node-redlock release",
        ),
    ),
    (
        "d01fb69e6ecc8bad3ca9bacba9f4f9e96862313f",
        spec(K::Acquire, C::KeysZero, Some(2), "node-redlock 4.0 acquire"),
    ),
    (
        "d141b64a0a43e66a8576edaea6123638c0d74b31",
        spec(K::Release, C::Count, None, "pottery release"),
    ),
    (
        "d75bb8b5bd13532ddedd17762e772346e39b321e",
        spec(K::Extend, C::OneZero, Some(2), "redsync extend"),
    ),
    (
        "daf86bbf8740dd3ca86733367a016364b2110627",
        spec(K::Release, C::Count, None, "rslock unlock"),
    ),
    (
        "dee54f77398d3c6d122b4111f3af8ccf1a93ac93",
        symfony(K::Acquire, 2, Some(3), "Symfony Lock RedisStore saveRead"),
    ),
    (
        "df51f6837dcfe303d334e6abea9aeae192bab216",
        with_token(
            spec(
                K::Release,
                C::Count,
                None,
                "@sesamecare-oss/redlock 1.x release",
            ),
            2,
        ),
    ),
    (
        "e27f94ac94f5d96f23f2e8697462233b6349a566",
        symfony(K::Query, 2, None, "Symfony Lock RedisStore exists"),
    ),
    (
        "e4612211c9f8f51c257e26e056b0a654b3187242",
        spec(K::Release, C::Count, None, "node-redlock 5 release"),
    ),
    (
        "e5a322e2634ef59a516e8ea150cb085afafee684",
        spec(K::Acquire, C::KeysZero, Some(2), "node-redlock 4.2 acquire"),
    ),
    (
        "e950836ed1e694540c503ef9972b8de518044d3b",
        spec(K::Release, C::RedsyncRelease, None, "redsync release"),
    ),
    (
        "eb0c00d98f6f33b4262419a509002884540f30be",
        spec(K::Acquire, C::OkNil, Some(3), "bsm/redislock obtain"),
    ),
    (
        "edd478c3e9deb21a48d55681748153e3711d50b2",
        spec(K::Release, C::Count, None, "redlock-rs unlock"),
    ),
    (
        "f0f9038aa2b6d6c3436c72d147573ea2a58f0ef2",
        spec(K::Release, C::OneNil, None, "Spring SPIN_LOCK release"),
    ),
    (
        "f458acd98fe495b8e4ff97c0f53f745f2c4aa252",
        spec(K::Query, C::PttlOrZero, None, "pottery locked"),
    ),
    (
        "f5f7bd3a3aa4a63c507c1155c5ea1219b350d992",
        spec(K::Query, C::PttlOrZero, None, "pottery locked"),
    ),
    (
        "f908d3f43dbcabc68fc0c9ecaf1fa4a285ecdb0a",
        spec(K::Query, C::TtlOrError, None, "aioredlock get_lock_ttl"),
    ),
    (
        "fc03c85cef965af38f17fef05d68cc66c7d85c96",
        spec(K::Release, C::Count, None, "PyPI redlock release"),
    ),
    (
        "fe7bee082a8220c6b621ace999a1ab57c4ab5145",
        symfony(
            K::Extend,
            2,
            Some(3),
            "Symfony Lock RedisStore putOffExpiration",
        ),
    ),
    (
        "fed16109024d968d9496e4140fe1355bac05ebff",
        split(
            in_seconds(spec(
                K::Extend,
                C::ZeroOne,
                Some(2),
                "python-redis-lock extend",
            )),
            None,
            None,
        ),
    ),
];
