fn main() {
    println!("platform-operator");
}
