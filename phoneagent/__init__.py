"""phoneagent"""
