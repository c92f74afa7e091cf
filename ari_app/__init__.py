"""ari_app"""
