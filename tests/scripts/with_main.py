"""A script with a main() function, for --function; exits with code 3 when called with an argument."""
import sys


def main():
    print("main called with", sys.argv[1:])
    if sys.argv[1:] == ["fail"]:
        sys.exit(3)


if __name__ == "__main__":
    print("ran as __main__")
