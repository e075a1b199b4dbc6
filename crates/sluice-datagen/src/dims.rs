//! The three dimensions (vehicles, users, locations): always clean, and a function of the seed
//! and their size only. Row `n` of a dimension does not depend on the size either, so a bigger
//! dimension extends a smaller one.

use crate::fmt::{push4, push_cents, push_date, push_id, push_u32};
use crate::rng::Rng;

pub(crate) const VEHICLES_HEADER: &str = "vehicle_id,vehicle_type,make,model,year,daily_rate\n";
pub(crate) const USERS_HEADER: &str = "user_id,first_name,last_name,email,signup_date,city\n";
pub(crate) const LOCATIONS_HEADER: &str = "location_id,city,state,country,zip_code\n";

/// Id widths: `V00001`, `U000001`, `L0001` (more digits past the width).
pub(crate) const VEHICLE_ID: (u8, usize) = (b'V', 5);
pub(crate) const USER_ID: (u8, usize) = (b'U', 6);
pub(crate) const LOCATION_ID: (u8, usize) = (b'L', 4);

struct VehicleType {
    name: &'static str,
    weight: u32,
    /// Daily rate range, whole dollars.
    dollars: (u32, u32),
    models: &'static [(&'static str, &'static str)],
}

const VEHICLE_TYPES: &[VehicleType] = &[
    VehicleType {
        name: "economy",
        weight: 25,
        dollars: (32, 49),
        models: &[
            ("Toyota", "Yaris"),
            ("Nissan", "Versa"),
            ("Kia", "Rio"),
            ("Hyundai", "Accent"),
            ("Chevrolet", "Spark"),
            ("Mitsubishi", "Mirage"),
        ],
    },
    VehicleType {
        name: "compact",
        weight: 25,
        dollars: (39, 59),
        models: &[
            ("Toyota", "Corolla"),
            ("Honda", "Civic"),
            ("Volkswagen", "Jetta"),
            ("Mazda", "Mazda3"),
            ("Hyundai", "Elantra"),
            ("Nissan", "Sentra"),
        ],
    },
    VehicleType {
        name: "midsize",
        weight: 18,
        dollars: (49, 74),
        models: &[
            ("Toyota", "Camry"),
            ("Honda", "Accord"),
            ("Nissan", "Altima"),
            ("Hyundai", "Sonata"),
            ("Chevrolet", "Malibu"),
            ("Kia", "K5"),
        ],
    },
    VehicleType {
        name: "suv",
        weight: 17,
        dollars: (69, 109),
        models: &[
            ("Toyota", "RAV4"),
            ("Honda", "CR-V"),
            ("Ford", "Explorer"),
            ("Jeep", "Grand Cherokee"),
            ("Chevrolet", "Tahoe"),
            ("Nissan", "Rogue"),
        ],
    },
    VehicleType {
        name: "luxury",
        weight: 8,
        dollars: (119, 249),
        models: &[
            ("BMW", "5 Series"),
            ("Mercedes-Benz", "E-Class"),
            ("Audi", "A6"),
            ("Lexus", "ES"),
            ("Cadillac", "CT5"),
            ("Tesla", "Model S"),
        ],
    },
    VehicleType {
        name: "van",
        weight: 7,
        dollars: (79, 129),
        models: &[
            ("Chrysler", "Pacifica"),
            ("Honda", "Odyssey"),
            ("Toyota", "Sienna"),
            ("Ford", "Transit"),
            ("Kia", "Carnival"),
            ("Mercedes-Benz", "Sprinter"),
        ],
    },
];

/// City, state, first zip code of the city's range.
const CITIES: &[(&str, &str, u32)] = &[
    ("New York", "NY", 10001),
    ("Los Angeles", "CA", 90001),
    ("Chicago", "IL", 60601),
    ("Houston", "TX", 77001),
    ("Phoenix", "AZ", 85001),
    ("Philadelphia", "PA", 19102),
    ("San Antonio", "TX", 78201),
    ("San Diego", "CA", 92101),
    ("Dallas", "TX", 75201),
    ("Austin", "TX", 78701),
    ("Jacksonville", "FL", 32202),
    ("San Jose", "CA", 95110),
    ("Columbus", "OH", 43201),
    ("Charlotte", "NC", 28202),
    ("Indianapolis", "IN", 46201),
    ("San Francisco", "CA", 94102),
    ("Seattle", "WA", 98101),
    ("Denver", "CO", 80202),
    ("Nashville", "TN", 37201),
    ("Washington", "DC", 20001),
    ("Boston", "MA", 2108),
    ("Las Vegas", "NV", 89101),
    ("Portland", "OR", 97201),
    ("Detroit", "MI", 48201),
    ("Atlanta", "GA", 30303),
    ("Miami", "FL", 33125),
    ("Minneapolis", "MN", 55401),
    ("Orlando", "FL", 32801),
    ("Salt Lake City", "UT", 84101),
    ("New Orleans", "LA", 70112),
    ("Kansas City", "MO", 64105),
    ("Tampa", "FL", 33602),
    ("Pittsburgh", "PA", 15201),
    ("St. Louis", "MO", 63101),
    ("Honolulu", "HI", 96813),
    ("Newark", "NJ", 7102),
];

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Emily",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Wei",
    "Priya",
    "Carlos",
    "Sofia",
    "Mohammed",
    "Aisha",
    "Hiroshi",
    "Yuki",
    "Luis",
    "Ana",
];

const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
];

const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

/// 2018-01-01 as days since 1970-01-01, and the number of days to 2025-12-31.
const SIGNUP_FIRST_DAY: i64 = 17_532;
const SIGNUP_DAYS: u32 = 2_922;

/// The dimensions, as the transactions need them and as the files hold them.
pub(crate) struct Dimensions {
    /// Daily rate in cents of vehicle `n` at index `n - 1`.
    pub rates: Vec<u32>,
    pub users: u32,
    pub locations: u32,
    pub vehicles_csv: Vec<u8>,
    pub users_csv: Vec<u8>,
    pub locations_csv: Vec<u8>,
}

impl Dimensions {
    pub fn generate(seed: u64, vehicles: u32, users: u32, locations: u32) -> Dimensions {
        let (rates, vehicles_csv) = gen_vehicles(seed, vehicles);
        Dimensions {
            rates,
            users,
            locations,
            vehicles_csv,
            users_csv: gen_users(seed, users),
            locations_csv: gen_locations(seed, locations),
        }
    }
}

fn gen_vehicles(seed: u64, n: u32) -> (Vec<u32>, Vec<u8>) {
    let mut rng = Rng::new(seed, b"vehicles", 0);
    let weights: Vec<u32> = VEHICLE_TYPES.iter().map(|t| t.weight).collect();
    let mut rates = Vec::with_capacity(n as usize);
    let mut b = Vec::with_capacity(VEHICLES_HEADER.len() + n as usize * 48);
    b.extend_from_slice(VEHICLES_HEADER.as_bytes());
    for id in 1..=n {
        let t = &VEHICLE_TYPES[rng.weighted(&weights)];
        let (make, model) = rng.pick(t.models);
        let year = rng.range(2016, 2025);
        let rate = rng.range(t.dollars.0, t.dollars.1) * 100 + rng.pick(&[0, 0, 50, 99]);
        rates.push(rate);
        push_id(&mut b, VEHICLE_ID.0, id, VEHICLE_ID.1);
        for field in [t.name, make, model] {
            b.push(b',');
            b.extend_from_slice(field.as_bytes());
        }
        b.push(b',');
        push_u32(&mut b, year);
        b.push(b',');
        push_cents(&mut b, i64::from(rate), b'.');
        b.push(b'\n');
    }
    (rates, b)
}

fn gen_users(seed: u64, n: u32) -> Vec<u8> {
    let mut rng = Rng::new(seed, b"users\0\0\0", 0);
    let mut b = Vec::with_capacity(USERS_HEADER.len() + n as usize * 72);
    b.extend_from_slice(USERS_HEADER.as_bytes());
    for id in 1..=n {
        let first = rng.pick(FIRST_NAMES);
        let last = rng.pick(LAST_NAMES);
        let domain = rng.pick(EMAIL_DOMAINS);
        let signup = SIGNUP_FIRST_DAY + i64::from(rng.below(SIGNUP_DAYS));
        let (city, _, _) = rng.pick(CITIES);
        push_id(&mut b, USER_ID.0, id, USER_ID.1);
        b.push(b',');
        b.extend_from_slice(first.as_bytes());
        b.push(b',');
        b.extend_from_slice(last.as_bytes());
        b.push(b',');
        // first.last<n>@domain: unique by the user number.
        b.extend(first.bytes().map(|c| c.to_ascii_lowercase()));
        b.push(b'.');
        b.extend(last.bytes().map(|c| c.to_ascii_lowercase()));
        push_u32(&mut b, id);
        b.push(b'@');
        b.extend_from_slice(domain.as_bytes());
        b.push(b',');
        push_date(&mut b, signup);
        b.push(b',');
        b.extend_from_slice(city.as_bytes());
        b.push(b'\n');
    }
    b
}

fn gen_locations(seed: u64, n: u32) -> Vec<u8> {
    let mut rng = Rng::new(seed, b"location", 0);
    let mut b = Vec::with_capacity(LOCATIONS_HEADER.len() + n as usize * 40);
    b.extend_from_slice(LOCATIONS_HEADER.as_bytes());
    for id in 1..=n {
        // Every city once before any twice, so that small location counts spread out.
        let (city, state, zip) = CITIES[(id as usize - 1) % CITIES.len()];
        let zip = zip + rng.below(40);
        push_id(&mut b, LOCATION_ID.0, id, LOCATION_ID.1);
        b.push(b',');
        b.extend_from_slice(city.as_bytes());
        b.push(b',');
        b.extend_from_slice(state.as_bytes());
        b.extend_from_slice(b",US,");
        // Five digits, leading zeros kept (Boston is 02108).
        push_u32_5(&mut b, zip);
        b.push(b'\n');
    }
    b
}

fn push_u32_5(b: &mut Vec<u8>, v: u32) {
    b.push(b'0' + (v / 10_000 % 10) as u8);
    push4(b, v % 10_000);
}

/// Rental start hour weights (a day-time peak, few night pickups).
pub(crate) const HOUR_WEIGHTS: [u32; 24] = [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 9, 8, 8, 8, 8, 9, 9, 7, 5, 4, 3, 2, 1];
