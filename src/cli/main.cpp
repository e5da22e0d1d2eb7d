#include <iostream>
int main() { std::cout << "kvprime\n"; return 0; }
