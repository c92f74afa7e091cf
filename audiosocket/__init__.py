"""audiosocket"""
