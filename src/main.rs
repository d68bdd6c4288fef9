fn main() {
    std::process::exit(cowdax::cli::main());
}
