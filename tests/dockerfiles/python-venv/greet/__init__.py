import os


def main():
    print(f"python greet as uid {os.getuid()}")
