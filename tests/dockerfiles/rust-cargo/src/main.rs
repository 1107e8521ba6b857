fn main() {
    println!("rust hello, {} args", std::env::args().count());
}
